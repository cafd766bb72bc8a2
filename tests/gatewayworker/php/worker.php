<?php
// worker.php: a BusinessWorker-like process for chatd's tests, written from
// the protocol facts. It asks the Register for the gateways (worker_connect,
// and keeps that connection: a new broadcast_addresses line connects to the
// new gateways), connects to each inner address with cmd 200
// {"worker_key","secret_key"}, reads events (1 ON_CONNECT,
// 205 ON_WEBSOCKET_CONNECT, 3 ON_MESSAGE, 4 ON_CLOSE), runs the Events class
// below with $_SESSION taken from the event's ext_data, writes a changed
// session back with 204, and prints one JSON line per happening on stdout.
//
// Usage: php worker.php '{"register":"127.0.0.1:1236","secret":"","name":"TestWorker","index":0}'
//
// Client messages (JSON) the Events class understands, and what it answers the client:
//   {"cmd":"echo","data":x}                 -> {"type":"echo","data":x}
//   {"cmd":"setsession","key":k,"value":v}  $_SESSION[k] = v -> {"type":"setsession","ok":true}
//   {"cmd":"whoami"}                        -> {"type":"whoami","client_id":...,"session":$_SESSION (from the event)}
//   {"cmd":"getsession"}                    -> {"type":"getsession","session":...} read back over a one-off
//                                              202 connection (GET_SESSION_BY_CLIENT_ID)
//   {"cmd":"bind","uid":u}                  BIND_UID -> {"type":"bound","uid":u}
//   {"cmd":"join","group":g}                JOIN_GROUP -> {"type":"joined","group":g}
//   {"cmd":"sendgroup","group":g,"data":x}  SEND_TO_GROUP on every gateway (nothing else)
//   {"cmd":"senduid","uid":u,"data":x}      SEND_TO_UID on every gateway (nothing else)
//   {"cmd":"kick","data":x}                 KICK this client with the message x
//   anything else                           -> {"type":"unknown","data":<the message as text>}
// Every client gets {"type":"init_php","client_id":...} from onConnect.
declare(strict_types=1);
require __DIR__ . '/GwClient.php';

$cfg = json_decode($argv[1] ?? '{}', true) ?: [];
$W = new Worker(
    (string) ($cfg['register'] ?? '127.0.0.1:1236'),
    (string) ($cfg['secret'] ?? ''),
    (string) ($cfg['name'] ?? 'TestWorker') . ':' . (int) ($cfg['index'] ?? 0)
);
$W->run();

function out(array $line): void
{
    echo json_encode($line, JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE | JSON_PARTIAL_OUTPUT_ON_ERROR), "\n";
    fflush(STDOUT);
}

/** The current event, as BusinessWorker's Context would hold it. */
final class Ctx
{
    public static Worker $worker;
    public static string $address = ''; // gateway inner address the event came from
    public static array $frame = [];
    public static string $clientId = '';
}

final class Events
{
    public static function onConnect(string $clientId): void
    {
        Ctx::$worker->toCurrent(json_encode(['type' => 'init_php', 'client_id' => $clientId]));
    }

    public static function onWebSocketConnect(string $clientId, $data): void
    {
    }

    public static function onMessage(string $clientId, string $message): void
    {
        $m = json_decode($message, true);
        $w = Ctx::$worker;
        switch (is_array($m) ? ($m['cmd'] ?? null) : null) {
            case 'echo':
                $w->toCurrent(json_encode(['type' => 'echo', 'data' => $m['data'] ?? null]));
                break;
            case 'setsession':
                $_SESSION[$m['key']] = $m['value'] ?? null;
                $w->toCurrent(json_encode(['type' => 'setsession', 'ok' => true]));
                break;
            case 'whoami':
                $w->toCurrent(json_encode(['type' => 'whoami', 'client_id' => $clientId, 'session' => (object) $_SESSION]));
                break;
            case 'getsession':
                $gc = new GwClient([], $w->secret, 3.0);
                $gc->addresses = [Ctx::$address];
                $s = $gc->getSession($clientId);
                $w->toCurrent(json_encode(['type' => 'getsession', 'session' => is_array($s) ? (object) $s : $s]));
                break;
            case 'bind':
                $w->send(Ctx::$address, ['cmd' => GwClient::BIND_UID, 'connection_id' => Ctx::$frame['connection_id'], 'ext_data' => (string) $m['uid']]);
                $w->toCurrent(json_encode(['type' => 'bound', 'uid' => $m['uid']]));
                break;
            case 'join':
                $w->send(Ctx::$address, ['cmd' => GwClient::JOIN_GROUP, 'connection_id' => Ctx::$frame['connection_id'], 'ext_data' => (string) $m['group']]);
                $w->toCurrent(json_encode(['type' => 'joined', 'group' => $m['group']]));
                break;
            case 'sendgroup':
                $w->sendEvery(['cmd' => GwClient::SEND_TO_GROUP, 'body' => (string) $m['data'],
                    'ext_data' => json_encode(['group' => [(string) $m['group']], 'exclude' => null])]);
                break;
            case 'senduid':
                $w->sendEvery(['cmd' => GwClient::SEND_TO_UID, 'body' => (string) $m['data'], 'ext_data' => json_encode([(string) $m['uid']])]);
                break;
            case 'kick':
                $w->send(Ctx::$address, ['cmd' => GwClient::KICK, 'connection_id' => Ctx::$frame['connection_id'], 'body' => (string) ($m['data'] ?? '')]);
                break;
            default:
                $w->toCurrent(json_encode(['type' => 'unknown', 'data' => $message]));
        }
    }

    public static function onClose(string $clientId): void
    {
    }
}

final class Worker
{
    public string $register;
    public string $secret;
    public string $key;
    private $reg = null;
    private string $regBuf = '';
    /** @var array<string, resource> inner address => socket */
    private array $gws = [];
    private array $bufs = [];
    private array $outq = [];

    public function __construct(string $register, string $secret, string $key)
    {
        $this->register = $register;
        $this->secret = $secret;
        $this->key = $key;
        Ctx::$worker = $this;
    }

    public function run(): void
    {
        $this->connectRegister();
        for (;;) {
            $r = array_values($this->gws);
            if ($this->reg) {
                $r[] = $this->reg;
            }
            $w = [];
            foreach ($this->outq as $a => $q) {
                if ($q !== '' && isset($this->gws[$a])) {
                    $w[] = $this->gws[$a];
                }
            }
            $e = null;
            if (!$r && !$w) {
                usleep(200000);
                $this->connectRegister();
                continue;
            }
            if (@stream_select($r, $w, $e, 1) === false) {
                continue;
            }
            foreach ($w as $s) {
                $this->flush(array_search($s, $this->gws, true));
            }
            foreach ($r as $s) {
                if ($s === $this->reg) {
                    $this->readRegister();
                } else {
                    $a = array_search($s, $this->gws, true);
                    if ($a !== false) {
                        $this->readGateway($a);
                    }
                }
            }
        }
    }

    private function connectRegister(): void
    {
        if ($this->reg) {
            return;
        }
        $s = @stream_socket_client('tcp://' . $this->register, $errno, $errstr, 3);
        if (!$s) {
            out(['ev' => 'register_error', 'error' => $errstr]);
            sleep(1);
            return;
        }
        fwrite($s, json_encode(['event' => 'worker_connect', 'secret_key' => $this->secret]) . "\n");
        stream_set_blocking($s, false);
        $this->reg = $s;
        $this->regBuf = '';
    }

    private function readRegister(): void
    {
        $d = @fread($this->reg, 65536);
        if ($d === false || $d === '') {
            out(['ev' => 'register_closed']);
            fclose($this->reg);
            $this->reg = null;
            return;
        }
        $this->regBuf .= $d;
        while (($i = strpos($this->regBuf, "\n")) !== false) {
            $line = substr($this->regBuf, 0, $i);
            $this->regBuf = substr($this->regBuf, $i + 1);
            $m = json_decode($line, true);
            if (($m['event'] ?? null) === 'broadcast_addresses' && is_array($m['addresses'] ?? null)) {
                out(['ev' => 'addresses', 'addresses' => $m['addresses']]);
                foreach ($m['addresses'] as $a) {
                    if (!isset($this->gws[$a])) {
                        $this->connectGateway($a);
                    }
                }
            } else {
                out(['ev' => 'register_line', 'line' => $line]);
            }
        }
    }

    private function connectGateway(string $a): void
    {
        $s = @stream_socket_client("tcp://$a", $errno, $errstr, 3);
        if (!$s) {
            out(['ev' => 'gateway_error', 'address' => $a, 'error' => $errstr]);
            return;
        }
        stream_set_blocking($s, false);
        $this->gws[$a] = $s;
        $this->bufs[$a] = '';
        $this->outq[$a] = '';
        $this->send($a, ['cmd' => GwClient::WORKER_CONNECT,
            'body' => json_encode(['worker_key' => $this->key, 'secret_key' => $this->secret])]);
        $this->flush($a);
        out(['ev' => 'gateway_connected', 'address' => $a]);
    }

    private function dropGateway(string $a, string $why): void
    {
        fclose($this->gws[$a]);
        unset($this->gws[$a], $this->bufs[$a], $this->outq[$a]);
        out(['ev' => 'gateway_closed', 'address' => $a, 'why' => $why]);
    }

    /** Queues a frame to gateway $a and writes what the socket takes now. */
    public function send(string $a, array $frame): void
    {
        if (!isset($this->gws[$a])) {
            return;
        }
        // queued only: what an event causes (replies, then the session
        // write-back) leaves in one write after the event, as one batch
        $this->outq[$a] .= GwClient::encodeFrame($frame);
    }

    public function sendEvery(array $frame): void
    {
        foreach (array_keys($this->gws) as $a) {
            $this->send($a, $frame);
        }
    }

    /** A message to the client of the current event, through its gateway. */
    public function toCurrent(string $message): void
    {
        $this->send(Ctx::$address, ['cmd' => GwClient::SEND_TO_ONE, 'connection_id' => Ctx::$frame['connection_id'], 'body' => $message]);
    }

    private function flush($a): void
    {
        if ($a === false || !isset($this->gws[$a]) || $this->outq[$a] === '') {
            return;
        }
        $n = @fwrite($this->gws[$a], $this->outq[$a]);
        if ($n === false) {
            $this->dropGateway($a, 'write failed');
            return;
        }
        $this->outq[$a] = (string) substr($this->outq[$a], $n);
    }

    private function readGateway(string $a): void
    {
        $d = @fread($this->gws[$a], 1 << 20);
        if ($d === false || $d === '') {
            $this->dropGateway($a, 'closed by the gateway');
            return;
        }
        $this->bufs[$a] .= $d;
        while (strlen($this->bufs[$a]) >= GwClient::HEADER_LEN) {
            $len = unpack('N', $this->bufs[$a])[1];
            if ($len < GwClient::HEADER_LEN) {
                $this->dropGateway($a, "bad pack_len $len");
                return;
            }
            if (strlen($this->bufs[$a]) < $len) {
                break;
            }
            $f = GwClient::decodeFrame(substr($this->bufs[$a], 0, $len));
            $this->bufs[$a] = (string) substr($this->bufs[$a], $len);
            $this->onFrame($a, $f);
            if (!isset($this->gws[$a])) {
                return;
            }
        }
    }

    private function onFrame(string $a, array $f): void
    {
        $cid = GwClient::encodeClientId(long2ip($f['local_ip']), $f['local_port'], $f['connection_id']);
        $names = [1 => 'connect', 3 => 'message', 4 => 'close', 205 => 'websocket_connect'];
        $line = [
            'ev' => $names[$f['cmd']] ?? 'other',
            'cmd' => $f['cmd'],
            'gateway' => $a,
            'connection_id' => $f['connection_id'],
            'client_id' => $cid,
            'client' => long2ip($f['client_ip']) . ':' . $f['client_port'],
            'local' => long2ip($f['local_ip']) . ':' . $f['local_port'],
            'gateway_port' => $f['gateway_port'],
            'flag' => $f['flag'],
            'session' => $f['ext_data'],
            'body' => $f['body'],
        ];
        if ($f['cmd'] === 205) {
            $line['data'] = @unserialize($f['body'], ['allowed_classes' => false]);
            $line['data_ok'] = is_array($line['data']);
        }
        out($line);
        if (!isset($names[$f['cmd']])) {
            return;
        }
        Ctx::$address = $a;
        Ctx::$frame = $f;
        Ctx::$clientId = $cid;
        $before = $f['ext_data'];
        $_SESSION = $before === '' ? [] : @unserialize($before, ['allowed_classes' => false]);
        if (!is_array($_SESSION)) {
            out(['ev' => 'bad_session', 'client_id' => $cid, 'session' => $before]);
            $_SESSION = [];
        }
        $start = serialize($_SESSION);
        switch ($f['cmd']) {
            case 1:
                Events::onConnect($cid);
                break;
            case 205:
                Events::onWebSocketConnect($cid, $line['data']);
                break;
            case 3:
                Events::onMessage($cid, $f['body']);
                break;
            case 4:
                Events::onClose($cid);
                break;
        }
        if ($f['cmd'] !== 4 && serialize($_SESSION) !== $start) {
            $this->send($a, ['cmd' => GwClient::SET_SESSION, 'connection_id' => $f['connection_id'], 'ext_data' => serialize($_SESSION)]);
        }
        foreach (array_keys($this->gws) as $g) {
            $this->flush($g);
        }
    }
}
