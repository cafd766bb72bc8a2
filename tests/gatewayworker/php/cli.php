<?php
// cli.php: runs GwClient calls (or raw byte exchanges) for the node tests and
// prints the results as one JSON document on stdout.
//
// Input: a JSON object as argv[1], or on stdin when there is no argument.
//   Calls mode:
//     {"register": "ip:port" | ["ip:port",...], "secret": "k", "timeout": 5,
//      "addresses": [...] (optional: skip the Register and use these gateways),
//      "calls": [["bindUid", "<client_id>", "42"], ["getClientIdByUid", "42"], ["sleep", 50], ...]}
//     Output: {"addresses": [...], "results": [{"ser": serialize(result), "json": result} | {"error": "..."}]}
//     An argument {"$hex": "..."} is passed as the bytes it spells.
//     "ser" is PHP's own serialize() of the value, so a test can tell int from
//     string keys and values, and null from [] (a void call gives "N;").
//     Each call runs on the same GwClient (the Register is asked once).
//   Raw mode:
//     {"raw": [{"address": "ip:port", "send": [{"hex": "..."} | {"text": "..."} | {"frame": {...}} | {"auth": "key"}],
//               "read": "reply" | "all" | "line" | "none", "timeout": 2}]}
//     frame: GwClient::encodeFrame fields (cmd, connection_id, flag, ext_data, body, ...).
//     Output: {"raw": [{"hex": "<bytes received>", "closed": bool, "timed_out": bool}]}
//     "reply" stops after one 4-byte-length reply, "line" after "\n", "all" at
//     close or timeout; "closed" says whether the peer closed (EOF) before
//     the read ended.
declare(strict_types=1);
require __DIR__ . '/GwClient.php';

$in = $argv[1] ?? stream_get_contents(STDIN);
$req = json_decode($in, true);
if (!is_array($req)) {
    fwrite(STDERR, "cli.php: input is not a JSON object\n");
    exit(2);
}

const JSON_FLAGS = JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE | JSON_PARTIAL_OUTPUT_ON_ERROR | JSON_PRESERVE_ZERO_FRACTION;

if (isset($req['raw'])) {
    $out = [];
    foreach ($req['raw'] as $x) {
        $out[] = rawExchange($x);
    }
    echo json_encode(['raw' => $out], JSON_FLAGS), "\n";
    exit(0);
}

$gw = new GwClient($req['register'] ?? '127.0.0.1:1236', (string) ($req['secret'] ?? ''), (float) ($req['timeout'] ?? 5));
if (isset($req['addresses'])) {
    $gw->addresses = $req['addresses'];
}
$results = [];
foreach ($req['calls'] ?? [] as $call) {
    $method = array_shift($call);
    try {
        if ($method === 'sleep') {
            usleep((int) ($call[0] * 1000));
            $r = null;
        } elseif (!method_exists($gw, $method)) {
            throw new GwError("no method $method");
        } else {
            $r = $gw->$method(...array_map('hexArgs', $call));
        }
        $results[] = ['ser' => serialize($r), 'json' => $r];
    } catch (Throwable $e) {
        $results[] = ['error' => get_class($e) . ': ' . $e->getMessage()];
    }
}
$addresses = null;
try {
    $addresses = $gw->addresses;
} catch (Throwable $e) {
}
echo json_encode(['addresses' => $addresses, 'results' => $results], JSON_FLAGS), "\n";

/** An argument {"$hex": "..."} is the bytes it spells (JSON strings can not carry arbitrary bytes). */
function hexArgs($v)
{
    if (is_array($v) && count($v) === 1 && isset($v['$hex'])) {
        return hex2bin($v['$hex']);
    }
    return is_array($v) ? array_map('hexArgs', $v) : $v;
}

function rawExchange(array $x): array
{
    $timeout = (float) ($x['timeout'] ?? 2);
    $s = @stream_socket_client('tcp://' . $x['address'], $errno, $errstr, $timeout);
    if (!$s) {
        return ['error' => "connect {$x['address']}: $errstr"];
    }
    $bytes = '';
    foreach ($x['send'] ?? [] as $p) {
        if (isset($p['hex'])) {
            $bytes .= hex2bin($p['hex']);
        } elseif (isset($p['text'])) {
            $bytes .= $p['text'];
        } elseif (isset($p['frame'])) {
            $bytes .= GwClient::encodeFrame($p['frame']);
        } elseif (array_key_exists('auth', $p)) {
            $bytes .= GwClient::encodeFrame(['cmd' => GwClient::GATEWAY_CLIENT_CONNECT, 'body' => json_encode(['secret_key' => $p['auth']])]);
        }
    }
    for ($off = 0; $off < strlen($bytes);) {
        $n = @fwrite($s, substr($bytes, $off));
        if ($n === false || $n === 0) {
            break;
        }
        $off += $n;
    }
    $mode = $x['read'] ?? 'reply';
    $buf = '';
    $closed = false;
    $timedOut = false;
    $deadline = microtime(true) + $timeout;
    while ($mode !== 'none') {
        if ($mode === 'reply' && strlen($buf) >= 4 && strlen($buf) >= 4 + unpack('N', $buf)[1]) {
            break;
        }
        if ($mode === 'line' && strpos($buf, "\n") !== false) {
            break;
        }
        $left = $deadline - microtime(true);
        if ($left <= 0) {
            $timedOut = true;
            break;
        }
        $r = [$s];
        $w = $e = null;
        if (@stream_select($r, $w, $e, (int) $left, (int) (fmod($left, 1) * 1e6)) < 1) {
            continue;
        }
        $d = @fread($s, 65536);
        if ($d === false || $d === '') {
            $closed = true;
            break;
        }
        $buf .= $d;
    }
    fclose($s);
    return ['hex' => bin2hex($buf), 'closed' => $closed, 'timed_out' => $timedOut];
}
