"""A TCP relay that delays every chunk it carries by a fixed time, each way: latency on
the link to a server, for kernels without tc's netem (sch_netem).

    python -m tests.fleet.delay_relay LISTEN_HOST:PORT TARGET_HOST:PORT

Starts with no delay; SIGUSR1 sets AGENTBUS_RELAY_DELAY_MS (default 20), SIGUSR2 sets it
back to 0. Order is kept per direction: a chunk read at t is written at t + delay, after
the chunks read before it, as a netem qdisc on both ends would do.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

DELAY = {"seconds": 0.0}
# AGENTBUS_RELAY_LOG=path: one line per chunk a client sends (wall time, client address,
# bytes), to count the round trips of a hand-off.
LOG = open(os.environ["AGENTBUS_RELAY_LOG"], "a", buffering=1) if os.environ.get("AGENTBUS_RELAY_LOG") else None  # noqa: SIM115
ON = float(os.environ.get("AGENTBUS_RELAY_DELAY_MS", "20")) / 1000


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client: str = "") -> None:
    due: asyncio.Queue = asyncio.Queue()

    async def deliver() -> None:
        while True:
            at, chunk = await due.get()
            if chunk is None:
                break
            wait = at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(chunk)
            await writer.drain()
        writer.close()

    delivering = asyncio.create_task(deliver())
    try:
        while chunk := await reader.read(65536):
            due.put_nowait((time.monotonic() + DELAY["seconds"], chunk))
            if LOG is not None and client:
                LOG.write(f"{time.time():.6f} {client} {len(chunk)}\n")
    except ConnectionError:
        pass
    due.put_nowait((0, None))
    try:
        await delivering
    except ConnectionError:
        pass


async def main(listen: str, target: str) -> None:
    host, port = listen.rsplit(":", 1)
    target_host, target_port = target.rsplit(":", 1)

    async def connected(client_reader, client_writer) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(target_host, int(target_port))
        except OSError:
            client_writer.close()
            return
        peer = client_writer.get_extra_info("peername")
        client = f"{peer[0]}:{peer[1]}"
        await asyncio.gather(pump(client_reader, server_writer, client), pump(server_reader, client_writer))

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, lambda: DELAY.update(seconds=ON))
    loop.add_signal_handler(signal.SIGUSR2, lambda: DELAY.update(seconds=0.0))
    server = await asyncio.start_server(connected, host, int(port))
    print(f"relay {listen} -> {target}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
