<?php
require __DIR__ . '/inc/common.php';

$error = '';
if ($_SERVER['REQUEST_METHOD'] === 'POST') {
    $name = trim($_POST['name'] ?? '');
    $st = db()->prepare('SELECT password FROM users WHERE name = :n');
    $st->bindValue(':n', $name);
    $row = $st->execute()->fetchArray(SQLITE3_ASSOC);
    if ($row && password_verify($_POST['password'] ?? '', $row['password'])) {
        session_regenerate_id(true);
        $_SESSION['user'] = $name;
        header('Location: index.php');
        exit;
    }
    $error = 'Wrong name or password.';
}
$title = 'Sign in';
require __DIR__ . '/inc/header.php';
?>
<?php if ($error): ?><p id="error"><?= h($error) ?></p><?php endif; ?>
<form method="post" action="login.php" id="login">
  <label>Name <input name="name" autocomplete="username"></label>
  <label>Password <input name="password" type="password" autocomplete="current-password"></label>
  <button type="submit">Sign in</button>
</form>
<?php require __DIR__ . '/inc/footer.php'; ?>
