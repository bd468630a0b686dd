<?php
// Included first by every page and program.
require_once __DIR__ . '/config.php';

session_start();

function db(): SQLite3 {
    static $db = null;
    if ($db === null) {
        $db = new SQLite3(APP_DB);
        $db->busyTimeout(2000);
    }
    return $db;
}

function current_user(): ?string {
    return $_SESSION['user'] ?? null;
}

function require_login(): string {
    $user = current_user();
    if ($user === null) {
        header('Location: login.php');
        exit;
    }
    return $user;
}

function json_out(int $status, array $data): void {
    http_response_code($status);
    header('Content-Type: application/json');
    echo json_encode($data);
    exit;
}

function h(string $s): string {
    return htmlspecialchars($s, ENT_QUOTES, 'UTF-8');
}
