#!/usr/bin/env python3
"""BGP client used to capture BIRD's messages (see README.md).

Connects from 192.0.2.2 to BIRD on 192.0.2.1:179, sends the OPEN in
peer_open_sent_to_bird.hex's form (AS 65002, MP IPv4+IPv6, route refresh,
4-octet AS, graceful restart), answers BIRD's OPEN with a KEEPALIVE, records
every message BIRD sends, then sends a header with length 18 and records
BIRD's NOTIFICATION. Writes one <name>.hex file per message into argv[1].
"""
import os, socket, struct, sys, time

out_dir = sys.argv[1]


def msg(t, body):
    return b'\xff' * 16 + struct.pack('!HB', 19 + len(body), t) + body


def cap(code, data):
    return bytes([code, len(data)]) + data


caps = (cap(1, struct.pack('!HBB', 1, 0, 1)) + cap(1, struct.pack('!HBB', 2, 0, 1)) + cap(2, b'')
        + cap(65, struct.pack('!I', 65002))
        + cap(64, struct.pack('!H', 120) + struct.pack('!HBB', 1, 1, 0x80) + struct.pack('!HBB', 2, 1, 0x80)))
opt = bytes([2, len(caps)]) + caps
open_msg = msg(1, struct.pack('!BHH4sB', 4, 65002, 90, socket.inet_aton('10.0.0.2'), len(opt)) + opt)

s = socket.socket()
s.bind(('192.0.2.2', 0))
s.connect(('192.0.2.1', 179))
s.sendall(open_msg)
buf, got, sent_keepalive = b'', [], False
s.settimeout(3)
deadline = time.time() + 8
while time.time() < deadline:
    while len(buf) >= 19:
        length = struct.unpack('!H', buf[16:18])[0]
        if len(buf) < length:
            break
        m, buf = buf[:length], buf[length:]
        got.append(m)
        if m[18] == 1 and not sent_keepalive:
            s.sendall(msg(4, b''))
            sent_keepalive = True
    try:
        d = s.recv(65536)
        if not d:
            break
        buf += d
    except socket.timeout:
        if len(got) >= 6:
            break
s.sendall(b'\xff' * 16 + bytes([0, 18, 4]))
s.settimeout(3)
d = s.recv(65536)
got.append(d[:struct.unpack('!H', d[16:18])[0]])

names = ['bird_open', 'bird_keepalive', 'bird_update_ipv4', 'bird_eor_ipv4', 'bird_update_ipv6',
         'bird_eor_ipv6', 'bird_notification_bad_length']
for name, m in zip(names, got):
    with open(os.path.join(out_dir, name + '.hex'), 'w') as f:
        f.write(m.hex() + '\n')
with open(os.path.join(out_dir, 'peer_open_sent_to_bird.hex'), 'w') as f:
    f.write(open_msg.hex() + '\n')
print('captured', len(got), 'messages:', [m[18] for m in got])
