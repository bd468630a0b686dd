<?php
require __DIR__ . '/inc/common.php';

$_SESSION = [];
session_destroy();
header('Location: login.php');
