"""QUIC peer for the network-sensor tests (aioquic, from PyPI).

    quic_peer.py server CERT KEY HOST PORT   answer handshakes until killed
    quic_peer.py client HOST PORT SERVER_NAME ALPN[,ALPN...]
                                             one handshake and a PING, exit 0

Only loopback or the test's own network namespace is ever used.
"""
import asyncio
import ssl
import sys

from aioquic.asyncio import connect, serve
from aioquic.quic.configuration import QuicConfiguration

ALPN = ["h3", "nhi-test"]


async def server(cert, key, host, port):
    cfg = QuicConfiguration(is_client=False, alpn_protocols=ALPN)
    cfg.load_cert_chain(cert, key)
    await serve(host, int(port), configuration=cfg)
    print("listening", flush=True)
    await asyncio.Future()


async def client(host, port, name, alpn):
    cfg = QuicConfiguration(is_client=True, alpn_protocols=alpn.split(","), server_name=name)
    cfg.verify_mode = ssl.CERT_NONE
    async with connect(host, int(port), configuration=cfg, wait_connected=True) as conn:
        await asyncio.wait_for(conn.ping(), 10)


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "server":
        asyncio.run(server(*args))
    else:
        asyncio.run(asyncio.wait_for(client(*args), 20))


if __name__ == "__main__":
    main()
