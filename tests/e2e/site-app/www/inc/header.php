<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title><?= h($title) ?> - <?= h(APP_NAME) ?></title>
<style>body { font-family: sans-serif; margin: 2em; } .who { float: right; }</style>
</head>
<body>
<?php if (current_user() !== null): ?>
<p class="who">Signed in as <b id="who"><?= h(current_user()) ?></b> · <a id="logout" href="logout.php">Log out</a></p>
<?php endif; ?>
<h1><?= h($title) ?></h1>
