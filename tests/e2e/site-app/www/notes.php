<?php
require __DIR__ . '/inc/common.php';

$user = current_user();
if ($user === null) {
    json_out(401, ['error' => 'not signed in']);
}
if ($_SERVER['REQUEST_METHOD'] === 'POST') {
    $in = json_decode(file_get_contents('php://input'), true);
    $text = trim((string) ($in['text'] ?? ''));
    if ($text === '') {
        json_out(400, ['error' => 'empty note']);
    }
    $st = db()->prepare('INSERT INTO notes (owner, text) VALUES (:o, :t)');
    $st->bindValue(':o', $user);
    $st->bindValue(':t', $text);
    $st->execute();
    json_out(201, ['id' => db()->lastInsertRowID(), 'text' => $text]);
}
$st = db()->prepare('SELECT id, text FROM notes WHERE owner = :o ORDER BY id');
$st->bindValue(':o', $user);
$res = $st->execute();
$notes = [];
while ($row = $res->fetchArray(SQLITE3_ASSOC)) {
    $notes[] = $row;
}
json_out(200, ['user' => $user, 'notes' => $notes]);
