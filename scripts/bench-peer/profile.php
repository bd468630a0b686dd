<?php
// The PHP peer of `GET /cgi-bin/profile` for scripts/bench-http: what a site written
// the common way (php-cgi + PDO SQLite, one process per request) pays for the same
// job on the same database file. It does what profile does for a piggybacked GET:
// checks the pb_session cookie (v2, HMAC-SHA256 over "pb_session=<payload>"), reads
// the user's profile with its friend and post counts, reads the mailbox counters and,
// when something is new, claims it in one IMMEDIATE transaction (new -> delivered,
// at most 100, newest first, counters and batch updated), then answers the same JSON.
// Not a second implementation to maintain: a benchmark peer, kept small.
header('Content-Type: application/json; charset=utf-8');
header('Cache-Control: private, no-store');

function fail(int $status, string $code): never {
    http_response_code($status);
    echo json_encode(['error' => ['code' => $code]]);
    exit;
}

$key = @file_get_contents(getenv('PEER_SECRET_FILE'));
if ($key === false) fail(500, 'misconfigured');
$user = null;
foreach (explode(';', $_SERVER['HTTP_COOKIE'] ?? '') as $c) {
    [$name, $value] = array_pad(explode('=', trim($c), 2), 2, '');
    if ($name !== 'pb_session') continue;
    $dot = strrpos($value, '.');
    if ($dot === false) continue;
    $payload = substr($value, 0, $dot);
    $parts = explode('.', $payload);
    if (count($parts) !== 5 || $parts[0] !== 'v2') continue;
    if (!hash_equals(hash_hmac('sha256', "pb_session=$payload", $key), substr($value, $dot + 1))) continue;
    if ((int)$parts[4] <= time()) continue;
    $user = (int)$parts[1];
}
if ($user === null) fail(401, 'not_identified');

$db = new PDO('sqlite:' . getenv('PEER_DB'), null, null, [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
$db->exec('PRAGMA busy_timeout = 2000');
$q = $db->prepare("SELECT name, display_name, bio, strftime('%Y-%m-%dT%H:%M:%SZ', joined_at, 'unixepoch') AS joined_at,
        (SELECT count(*) FROM friendships WHERE user_id = u.id) AS friends,
        (SELECT count(*) FROM posts WHERE author_id = u.id) AS posts, preview
    FROM users u WHERE id = ?");
$q->execute([$user]);
$p = $q->fetch(PDO::FETCH_ASSOC);
if (!$p) fail(404, 'user_not_found');

$q = $db->prepare('SELECT new, delivered, batch FROM mailbox WHERE user_id = ?');
$q->execute([$user]);
$m = $q->fetch(PDO::FETCH_ASSOC) ?: ['new' => 0, 'delivered' => 0, 'batch' => 0];
$items = [];
$claimed = 0;
$batch = null;
if ($m['new'] > 0) {
    $db->exec('BEGIN IMMEDIATE');
    $q = $db->prepare('SELECT batch FROM mailbox WHERE user_id = ?');
    $q->execute([$user]);
    $batch = (int)$q->fetchColumn() + 1;
    $q = $db->prepare("UPDATE messages SET state = 'delivered', batch = ? WHERE id IN (
        SELECT id FROM messages WHERE recipient_id = ? AND state = 'new' ORDER BY id DESC LIMIT 100)");
    $q->execute([$batch, $user]);
    $claimed = $q->rowCount();
    $db->prepare('UPDATE mailbox SET new = new - ?, delivered = delivered + ?, batch = ?, announced_at = ? WHERE user_id = ?')
        ->execute([$claimed, $claimed, $batch, time(), $user]);
    $q = $db->prepare("SELECT m.id, u.name AS sender, m.subject, substr(m.body, 1, 60) AS snippet,
            strftime('%Y-%m-%dT%H:%M:%SZ', m.sent_at, 'unixepoch') AS sent_at, m.kind
        FROM messages m JOIN users u ON u.id = m.sender_id
        WHERE m.recipient_id = ? AND m.state = 'delivered' AND m.batch = ? ORDER BY m.id DESC LIMIT 20");
    $q->execute([$user, $batch]);
    foreach ($q->fetchAll(PDO::FETCH_ASSOC) as $r) {
        $items[] = ['id' => (int)$r['id'], 'from' => $r['sender'], 'subject' => $r['subject'],
            'snippet' => $r['snippet'], 'sent_at' => $r['sent_at'], 'kind' => $r['kind']];
    }
    $db->exec('COMMIT');
    $m['new'] -= $claimed;
    $m['delivered'] += $claimed;
}
$sm = ['unread' => $m['delivered'] + $m['new'], 'delivered' => $m['delivered'] - $claimed, 'new' => $claimed,
    'items' => $items, 'more' => $claimed > count($items)];
if ($batch !== null) $sm['batch'] = $batch;
$p['friends'] = (int)$p['friends'];
$p['posts'] = (int)$p['posts'];
$p['message_preview'] = $p['preview'];
unset($p['preview']);
echo json_encode(['profile' => $p, 'site_messages' => $sm], JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES);
