<?php
// GwClient: a GatewayClient-like client of GatewayWorker's inner protocol,
// written for chatd's tests from /work/shared/gatewayworker-protocol.md (the
// facts), not from GatewayClient's code. It behaves the way the facts say
// GatewayClient does, so the tests see what a php-fpm backend would see:
//  - the gateway list comes from the Register (worker_connect, one
//    broadcast_addresses line, close), cached for the life of this object;
//  - every call opens a new TCP connection per gateway, sends a 202 auth frame
//    first when a secret is set, then its frame; queries read one reply
//    (4-byte big-endian length + serialize()) and close;
//  - a per-client call goes to the one gateway its client_id names;
//    cluster-wide calls go to every listed gateway and the replies are merged,
//    list replies turned into client_ids from the dialled address plus the
//    connection ids in the reply.
declare(strict_types=1);

final class GwError extends RuntimeException
{
}

final class GwClient
{
    // commands (see the facts' tables)
    const SEND_TO_ONE = 5;
    const SEND_TO_ALL = 6;
    const KICK = 7;
    const DESTROY = 8;
    const UPDATE_SESSION = 9;
    const GET_ALL_CLIENT_SESSIONS = 10;
    const IS_ONLINE = 11;
    const BIND_UID = 12;
    const UNBIND_UID = 13;
    const SEND_TO_UID = 14;
    const GET_CLIENT_ID_BY_UID = 15;
    const BATCH_GET_CLIENT_ID_BY_UID = 16;
    const JOIN_GROUP = 20;
    const LEAVE_GROUP = 21;
    const SEND_TO_GROUP = 22;
    const GET_CLIENT_SESSIONS_BY_GROUP = 23;
    const GET_CLIENT_COUNT_BY_GROUP = 24;
    const SELECT = 25;
    const GET_GROUP_ID_LIST = 26;
    const UNGROUP = 27;
    const BATCH_GET_CLIENT_COUNT_BY_GROUP = 28;
    const WORKER_CONNECT = 200;
    const PING = 201;
    const GATEWAY_CLIENT_CONNECT = 202;
    const GET_SESSION_BY_CLIENT_ID = 203;
    const SET_SESSION = 204;

    const FLAG_BODY_RAW = 0x01;
    const FLAG_NOT_FRAMED = 0x02;
    const HEADER_LEN = 28;

    /** @var string[] Register addresses ("ip:port"); one is asked */
    public array $registerAddress;
    public string $secretKey;
    public float $timeout;
    /** @var string[]|null gateway inner addresses, from the Register (or set by hand) */
    public ?array $addresses = null;

    public function __construct($registerAddress, string $secretKey = '', float $timeout = 5.0)
    {
        $this->registerAddress = (array) $registerAddress;
        $this->secretKey = $secretKey;
        $this->timeout = $timeout;
    }

    /* ------------------------------------------------------------ wire */

    /** One frame: the 28-byte header, ext_data, body. */
    public static function encodeFrame(array $f): string
    {
        $ext = (string) ($f['ext_data'] ?? '');
        // a null body is serialize(null) = "N;" without the raw flag, as GatewayClient sends
        // closeClient() without a message
        $body = array_key_exists('body', $f) ? $f['body'] : '';
        $flag = (int) ($f['flag'] ?? 0);
        if (is_scalar($body)) {
            $body = (string) $body;
            $flag |= self::FLAG_BODY_RAW;
        } else {
            $body = serialize($body);
        }
        $len = self::HEADER_LEN + strlen($ext) + strlen($body);
        return pack(
            'NCNnNnNCnN',
            $len,
            (int) $f['cmd'],
            (int) ($f['local_ip'] ?? 0),
            (int) ($f['local_port'] ?? 0),
            (int) ($f['client_ip'] ?? 0),
            (int) ($f['client_port'] ?? 0),
            (int) ($f['connection_id'] ?? 0),
            $flag,
            (int) ($f['gateway_port'] ?? 0),
            strlen($ext)
        ) . $ext . $body;
    }

    /** Parses one whole frame (as read off the wire). */
    public static function decodeFrame(string $buf): array
    {
        $h = unpack('Npack_len/Ccmd/Nlocal_ip/nlocal_port/Nclient_ip/nclient_port/Nconnection_id/Cflag/ngateway_port/Next_len', $buf);
        $h['ext_data'] = substr($buf, self::HEADER_LEN, $h['ext_len']);
        $h['body'] = (string) substr($buf, self::HEADER_LEN + $h['ext_len'], $h['pack_len'] - self::HEADER_LEN - $h['ext_len']);
        return $h;
    }

    public function authFrame(): string
    {
        return self::encodeFrame([
            'cmd' => self::GATEWAY_CLIENT_CONNECT,
            'body' => json_encode(['secret_key' => $this->secretKey]),
        ]);
    }

    /** client_id (20 hex) -> [ip string, port, connection id] */
    public static function decodeClientId(string $clientId): array
    {
        if (strlen($clientId) !== 20 || !ctype_xdigit($clientId)) {
            throw new GwError("client_id $clientId is not 20 hex characters");
        }
        $p = unpack('Nip/nport/Nid', hex2bin($clientId));
        return [long2ip($p['ip']), $p['port'], $p['id']];
    }

    public static function encodeClientId(string $ip, int $port, int $connectionId): string
    {
        return bin2hex(pack('NnN', ip2long($ip), $port, $connectionId));
    }

    /** Opens a TCP connection to "ip:port". */
    private function dial(string $address)
    {
        $s = @stream_socket_client("tcp://$address", $errno, $errstr, $this->timeout);
        if (!$s) {
            throw new GwError("can not connect to $address: $errstr");
        }
        stream_set_timeout($s, (int) $this->timeout, (int) (fmod($this->timeout, 1) * 1e6));
        return $s;
    }

    private static function writeAll($s, string $data, string $address): void
    {
        for ($off = 0; $off < strlen($data);) {
            $n = @fwrite($s, substr($data, $off));
            if ($n === false || $n === 0) {
                throw new GwError("write to $address failed");
            }
            $off += $n;
        }
    }

    private static function readExact($s, int $n, string $address): string
    {
        $buf = '';
        while (strlen($buf) < $n) {
            $d = fread($s, $n - strlen($buf));
            if ($d === false || $d === '') {
                $meta = stream_get_meta_data($s);
                $why = $meta['timed_out'] ? 'timed out' : 'connection closed';
                throw new GwError("reading a reply from $address: $why after " . strlen($buf) . " of $n bytes");
            }
            $buf .= $d;
        }
        return $buf;
    }

    /** Reads one query reply: 4-byte length + that many bytes; returns the bytes. */
    public static function readReply($s, string $address): string
    {
        $len = unpack('N', self::readExact($s, 4, $address))[1];
        return $len ? self::readExact($s, $len, $address) : '';
    }

    /** A new connection: [auth frame] + frame; fire-and-forget closes at once. */
    private function sendFrame(string $address, array $frame): void
    {
        $s = $this->dial($address);
        $bytes = ($this->secretKey !== '' ? $this->authFrame() : '') . self::encodeFrame($frame);
        self::writeAll($s, $bytes, $address);
        fclose($s);
    }

    /** A query on a new connection to each address (all sent, then all read): address => serialized reply. */
    private function queryAll(array $addresses, array $frame): array
    {
        $socks = [];
        $bytes = ($this->secretKey !== '' ? $this->authFrame() : '') . self::encodeFrame($frame);
        foreach ($addresses as $a) {
            $socks[$a] = $this->dial($a);
            self::writeAll($socks[$a], $bytes, $a);
        }
        $out = [];
        foreach ($socks as $a => $s) {
            $out[$a] = self::readReply($s, $a);
            fclose($s);
        }
        return $out;
    }

    private function query(string $address, array $frame)
    {
        return self::unser($this->queryAll([$address], $frame)[$address], $address);
    }

    private static function unser(string $reply, string $address)
    {
        if ($reply === 'b:0;') {
            return false;
        }
        $v = @unserialize($reply, ['allowed_classes' => false]);
        if ($v === false) {
            throw new GwError("reply from $address is not serialize() output: " . bin2hex(substr($reply, 0, 64)));
        }
        return $v;
    }

    /* ------------------------------------------------------- Register */

    /** The gateway inner addresses the Register lists (asked once per object). */
    public function getAddresses(): array
    {
        if ($this->addresses !== null) {
            return $this->addresses;
        }
        $last = null;
        foreach ($this->registerAddress as $reg) {
            try {
                $this->addresses = self::askRegister($reg, $this->secretKey, $this->timeout);
                return $this->addresses;
            } catch (GwError $e) {
                $last = $e;
            }
        }
        throw $last ?? new GwError('no Register address');
    }

    public static function askRegister(string $reg, string $secret, float $timeout): array
    {
        $s = @stream_socket_client("tcp://$reg", $errno, $errstr, $timeout);
        if (!$s) {
            throw new GwError("can not connect to the Register $reg: $errstr");
        }
        stream_set_timeout($s, (int) $timeout, (int) (fmod($timeout, 1) * 1e6));
        self::writeAll($s, json_encode(['event' => 'worker_connect', 'secret_key' => $secret]) . "\n", $reg);
        $line = fgets($s);
        fclose($s);
        if ($line === false) {
            throw new GwError("the Register $reg closed or timed out without an answer");
        }
        $m = json_decode($line, true);
        if (!is_array($m) || ($m['event'] ?? null) !== 'broadcast_addresses' || !is_array($m['addresses'] ?? null)) {
            throw new GwError("the Register $reg answered " . json_encode($line));
        }
        return $m['addresses'];
    }

    /* ---------------------------------------- per-client calls (one gateway) */

    /** Sends cmd to the gateway holding $clientId (fire-and-forget). */
    private function toClient(string $clientId, int $cmd, array $more = []): void
    {
        [$ip, $port, $id] = self::decodeClientId($clientId);
        $this->sendFrame("$ip:$port", ['cmd' => $cmd, 'connection_id' => $id] + $more);
    }

    private function queryClient(string $clientId, int $cmd, array $more = [])
    {
        [$ip, $port, $id] = self::decodeClientId($clientId);
        return $this->query("$ip:$port", ['cmd' => $cmd, 'connection_id' => $id] + $more);
    }

    public function sendToClient(string $clientId, string $message, bool $raw = false): void
    {
        $this->toClient($clientId, self::SEND_TO_ONE, ['body' => $message, 'flag' => $raw ? self::FLAG_NOT_FRAMED : 0]);
    }

    public function closeClient(string $clientId, ?string $message = null): void
    {
        $this->toClient($clientId, self::KICK, ['body' => $message]);
    }

    public function destroyClient(string $clientId): void
    {
        $this->toClient($clientId, self::DESTROY);
    }

    public function isOnline(string $clientId): int
    {
        [$ip, $port] = self::decodeClientId($clientId);
        // a gateway the Register does not list holds no connection (GatewayClient asks the listed ones)
        if (!in_array("$ip:$port", $this->getAddresses(), true)) {
            return 0;
        }
        return (int) $this->queryClient($clientId, self::IS_ONLINE);
    }

    public function bindUid(string $clientId, $uid): void
    {
        $this->toClient($clientId, self::BIND_UID, ['ext_data' => (string) $uid]);
    }

    public function unbindUid(string $clientId, $uid): void
    {
        $this->toClient($clientId, self::UNBIND_UID, ['ext_data' => (string) $uid]);
    }

    public function joinGroup(string $clientId, $group): void
    {
        $this->toClient($clientId, self::JOIN_GROUP, ['ext_data' => (string) $group]);
    }

    public function leaveGroup(string $clientId, $group): void
    {
        $this->toClient($clientId, self::LEAVE_GROUP, ['ext_data' => (string) $group]);
    }

    public function setSession(string $clientId, array $session): void
    {
        $this->toClient($clientId, self::SET_SESSION, ['ext_data' => serialize($session)]);
    }

    public function updateSession(string $clientId, array $session): void
    {
        $this->toClient($clientId, self::UPDATE_SESSION, ['ext_data' => serialize($session)]);
    }

    /** The session array; null when the connection is gone. */
    public function getSession(string $clientId)
    {
        return $this->queryClient($clientId, self::GET_SESSION_BY_CLIENT_ID);
    }

    /** The uid of a client, or null (SELECT uid where connection_id, on its gateway). */
    public function getUidByClientId(string $clientId)
    {
        [$ip, $port, $id] = self::decodeClientId($clientId);
        $rows = $this->query("$ip:$port", [
            'cmd' => self::SELECT,
            'ext_data' => json_encode(['fields' => ['uid'], 'where' => ['connection_id' => [$id]]]),
        ]);
        foreach ((array) $rows as $info) {
            return $info['uid'] ?? null;
        }
        return null;
    }

    /* ---------------------------------------- cluster-wide calls (every gateway) */

    private function toAll(array $frame): void
    {
        foreach ($this->getAddresses() as $a) {
            $this->sendFrame($a, $frame);
        }
    }

    /** Connection ids of $clientIds grouped by gateway address: address => [id => id]. */
    private static function byGateway(array $clientIds): array
    {
        $out = [];
        foreach ($clientIds as $cid) {
            [$ip, $port, $id] = self::decodeClientId((string) $cid);
            $out["$ip:$port"][$id] = $id;
        }
        return $out;
    }

    public function sendToAll(string $message, ?array $clientIdArray = null, $excludeClientId = null, bool $raw = false): void
    {
        $flag = $raw ? self::FLAG_NOT_FRAMED : 0;
        if ($clientIdArray !== null) {
            // only the gateways that hold one of them, each with its own ids
            foreach (self::byGateway($clientIdArray) as $a => $ids) {
                $this->sendFrame($a, ['cmd' => self::SEND_TO_ALL, 'body' => $message, 'flag' => $flag,
                    'ext_data' => json_encode(['connections' => $ids])]);
            }
            return;
        }
        $ex = $excludeClientId === null ? [] : self::byGateway((array) $excludeClientId);
        foreach ($this->getAddresses() as $a) {
            $ext = isset($ex[$a]) ? json_encode(['exclude' => $ex[$a]]) : '';
            $this->sendFrame($a, ['cmd' => self::SEND_TO_ALL, 'body' => $message, 'flag' => $flag, 'ext_data' => $ext]);
        }
    }

    public function sendToUid($uid, string $message, bool $raw = false): void
    {
        $uids = array_values(array_map('strval', (array) $uid));
        $this->toAll(['cmd' => self::SEND_TO_UID, 'body' => $message, 'flag' => $raw ? self::FLAG_NOT_FRAMED : 0,
            'ext_data' => json_encode($uids)]);
    }

    public function sendToGroup($group, string $message, $excludeClientId = null, bool $raw = false): void
    {
        $groups = array_values(array_map('strval', (array) $group));
        if (!$groups) {
            return;
        }
        $ex = $excludeClientId === null ? [] : self::byGateway((array) $excludeClientId);
        foreach ($this->getAddresses() as $a) {
            $this->sendFrame($a, ['cmd' => self::SEND_TO_GROUP, 'body' => $message,
                'flag' => $raw ? self::FLAG_NOT_FRAMED : 0,
                'ext_data' => json_encode(['group' => $groups, 'exclude' => $ex[$a] ?? null])]);
        }
    }

    public function ungroup($group): void
    {
        $this->toAll(['cmd' => self::UNGROUP, 'ext_data' => (string) $group]);
    }

    /** address => unserialized reply, from every gateway */
    private function queryEvery(array $frame): array
    {
        $out = [];
        foreach ($this->queryAll($this->getAddresses(), $frame) as $a => $reply) {
            $out[$a] = self::unser($reply, $a);
        }
        return $out;
    }

    private static function clientIdAt(string $address, $connectionId): string
    {
        [$ip, $port] = explode(':', $address);
        return self::encodeClientId($ip, (int) $port, (int) $connectionId);
    }

    public function getClientIdCountByGroup($group = ''): int
    {
        $n = 0;
        foreach ($this->queryEvery(['cmd' => self::GET_CLIENT_COUNT_BY_GROUP, 'ext_data' => (string) $group]) as $c) {
            $n += (int) $c;
        }
        return $n;
    }

    public function getClientCountByGroup($group = ''): int
    {
        return $this->getClientIdCountByGroup($group);
    }

    public function getAllClientIdCount(): int
    {
        return $this->getClientIdCountByGroup('');
    }

    public function getAllClientCount(): int
    {
        return $this->getClientIdCountByGroup('');
    }

    /** group => count, summed over the gateways */
    public function batchGetClientCountByGroup(array $groups): array
    {
        $out = [];
        foreach ($this->queryEvery(['cmd' => self::BATCH_GET_CLIENT_COUNT_BY_GROUP, 'ext_data' => json_encode(array_values($groups))]) as $r) {
            foreach ((array) $r as $g => $c) {
                $out[$g] = ($out[$g] ?? 0) + $c;
            }
        }
        return $out;
    }

    public function getClientIdByUid($uid): array
    {
        $out = [];
        foreach ($this->queryEvery(['cmd' => self::GET_CLIENT_ID_BY_UID, 'ext_data' => (string) $uid]) as $a => $ids) {
            foreach ((array) $ids as $id) {
                $out[] = self::clientIdAt($a, $id);
            }
        }
        return $out;
    }

    /** uid => [client_id...]: uids with no connection anywhere are left out. */
    public function batchGetClientIdByUid(array $uids): array
    {
        $out = [];
        $ext = json_encode(array_values(array_map('strval', $uids)));
        foreach ($this->queryEvery(['cmd' => self::BATCH_GET_CLIENT_ID_BY_UID, 'ext_data' => $ext]) as $a => $r) {
            foreach ((array) $r as $uid => $ids) {
                foreach ((array) $ids as $id) {
                    $out[$uid][] = self::clientIdAt($a, $id);
                }
            }
        }
        return $out;
    }

    public function isUidOnline($uid): int
    {
        return (int) !empty($this->getClientIdByUid($uid));
    }

    private static function decodeSession($s): array
    {
        if (is_array($s)) {
            return $s;
        }
        if (!is_string($s) || $s === '') {
            return [];
        }
        $v = @unserialize($s, ['allowed_classes' => false]);
        return is_array($v) ? $v : [];
    }

    /** client_id => session array */
    public function getClientSessionsByGroup($group): array
    {
        $out = [];
        foreach ($this->queryEvery(['cmd' => self::GET_CLIENT_SESSIONS_BY_GROUP, 'ext_data' => (string) $group]) as $a => $r) {
            foreach ((array) $r as $id => $s) {
                $out[self::clientIdAt($a, $id)] = self::decodeSession($s);
            }
        }
        return $out;
    }

    /** client_id => session array, of every client (or of a group's members) */
    public function getAllClientSessions($group = ''): array
    {
        if ((string) $group !== '') {
            return $this->getClientSessionsByGroup($group);
        }
        $out = [];
        foreach ($this->queryEvery(['cmd' => self::GET_ALL_CLIENT_SESSIONS]) as $a => $r) {
            foreach ((array) $r as $id => $s) {
                $out[self::clientIdAt($a, $id)] = self::decodeSession($s);
            }
        }
        return $out;
    }

    /** SELECT on every gateway: address => [connection_id => row] */
    public function select(array $fields, array $where = []): array
    {
        $w = [];
        foreach (['groups', 'uid'] as $k) {
            if (isset($where[$k])) {
                $w[$k] = array_values(array_map('strval', (array) $where[$k]));
            }
        }
        $addresses = $this->getAddresses();
        $perGw = null;
        if (isset($where['client_id'])) {
            $perGw = self::byGateway((array) $where['client_id']);
            $addresses = array_values(array_intersect($addresses, array_keys($perGw)));
        }
        $out = [];
        foreach ($addresses as $a) {
            $ww = $w;
            if ($perGw !== null) {
                $ww['connection_id'] = array_values($perGw[$a]);
            }
            $ext = json_encode(['fields' => $fields, 'where' => (object) $ww]);
            $out[$a] = $this->query($a, ['cmd' => self::SELECT, 'ext_data' => $ext]);
        }
        return $out;
    }

    /** client_id => client_id */
    public function getClientIdListByGroup($group): array
    {
        $out = [];
        foreach ($this->select(['uid'], ['groups' => [$group]]) as $a => $rows) {
            foreach ((array) $rows as $id => $info) {
                $cid = self::clientIdAt($a, $id);
                $out[$cid] = $cid;
            }
        }
        return $out;
    }

    /** uid => uid (PHP array keys: a numeric uid becomes an integer key) */
    public function getUidListByGroup($group): array
    {
        return $this->uidMap($this->select(['uid'], ['groups' => [$group]]));
    }

    public function getAllUidList(): array
    {
        return $this->uidMap($this->select(['uid'], []));
    }

    private function uidMap(array $byGw): array
    {
        $out = [];
        foreach ($byGw as $rows) {
            foreach ((array) $rows as $info) {
                if (isset($info['uid'])) {
                    $out[$info['uid']] = $info['uid'];
                }
            }
        }
        return $out;
    }

    public function getUidCountByGroup($group): int
    {
        return count($this->getUidListByGroup($group));
    }

    public function getAllUidCount(): int
    {
        return count($this->getAllUidList());
    }

    /** group => group, over every gateway */
    public function getAllGroupIdList(): array
    {
        $out = [];
        foreach ($this->queryEvery(['cmd' => self::GET_GROUP_ID_LIST]) as $r) {
            foreach ((array) $r as $g) {
                $out[$g] = $g;
            }
        }
        return $out;
    }
}
