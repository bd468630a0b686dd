<?php
// Creates the application's database and its users: php setup.php DB NAME:PASSWORD...
if ($argc < 3) {
    fwrite(STDERR, "usage: php setup.php DB NAME:PASSWORD...\n");
    exit(2);
}
$db = new SQLite3($argv[1]);
$db->exec('CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, password TEXT NOT NULL)');
$db->exec('CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, owner TEXT NOT NULL, text TEXT NOT NULL)');
foreach (array_slice($argv, 2) as $pair) {
    [$name, $password] = explode(':', $pair, 2);
    $st = $db->prepare('INSERT OR REPLACE INTO users (name, password) VALUES (:n, :p)');
    $st->bindValue(':n', $name);
    $st->bindValue(':p', password_hash($password, PASSWORD_DEFAULT));
    $st->execute();
}
echo "ok\n";
