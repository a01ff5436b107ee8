"""A fault-injecting TCP proxy for the peer links between keel nodes (asyncio, in a thread).

Every directed link "node i dials node j" goes through its own listening port: node i is told
that peer j lives at that port, and the proxy forwards to j's real peer port. A partition
between two nodes *blackholes* the pair: nothing is forwarded in either direction and no
socket is closed or reset — what a dropped route or a dead switch looks like to TCP. The
sender's writes still succeed (they land in socket buffers), nothing comes back.

Healing the pair forwards again, the way TCP resumes after a partition: a connection that had
data (or a FIN) blackholed resumes only at its next retransmission, which Linux schedules
with a doubling backoff (first after ~200 ms, then 400 ms, 800 ms, ... since the first lost
segment, capped at 120 s), and a connection attempted during the partition completes only at
its next SYN retransmission (1 s, then 2 s, 4 s, ... after the first SYN). So a connection
that was blackholed for 20 s stays mute for up to ~20 s more after the heal, exactly the
behaviour keel must not depend on; a connection opened after the heal works at once.
"""
import asyncio
import socket
import threading
import time

RTO_MIN = 0.2  # Linux TCP_RTO_MIN
RTO_MAX = 120.0
SYN_RTO = 1.0  # Linux TCP_TIMEOUT_INIT


def next_retransmission(first_loss, healed_at, first_rto):
    """The first retransmission time (doubling backoff from first_loss) at or after healed_at."""
    t, rto = first_loss + first_rto, first_rto
    while t < healed_at:
        rto = min(rto * 2, RTO_MAX)
        t += rto
    return t


class FaultProxy:
    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.blocked = {}  # frozenset({a, b}) -> (asyncio.Event set on heal, [heal time])
        self.servers = []
        self.conns = set()
        self.held_segments = 0  # chunks that waited for a heal

    def _run(self, coro, timeout=10):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    # -- links ---------------------------------------------------------------------------

    def add_link(self, src, dst, dst_port):
        """Listens on a free loopback port for node `src`'s connections to node `dst`."""
        async def start():
            server = await asyncio.start_server(
                lambda r, w: self._accepted(r, w, src, dst, dst_port), "127.0.0.1", 0)
            self.servers.append(server)
            return server.sockets[0].getsockname()[1]
        return self._run(start())

    def partition(self, node, others):
        """Blackholes every link between `node` and each of `others`, both directions."""
        def go():
            for o in others:
                pair = frozenset((node, o))
                if pair not in self.blocked:
                    self.blocked[pair] = (asyncio.Event(), [None])
        self.loop.call_soon_threadsafe(go)
        self._run(asyncio.sleep(0))

    def heal(self):
        """Ends every partition: forwarding resumes as TCP would (see the module comment)."""
        def go():
            now = time.monotonic()
            for ev, healed in self.blocked.values():
                healed[0] = now
                ev.set()
            self.blocked.clear()
        self.loop.call_soon_threadsafe(go)
        self._run(asyncio.sleep(0))

    async def _gate(self, pair, first_rto):
        """Waits while `pair` is blackholed; after the heal, until the next retransmission."""
        entry = self.blocked.get(pair)
        if entry is None:
            return
        self.held_segments += 1
        lost_at = time.monotonic()
        ev, healed = entry
        await ev.wait()
        delay = next_retransmission(lost_at, healed[0], first_rto) - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _accepted(self, reader, writer, src, dst, dst_port):
        try:
            await self._forward(reader, writer, src, dst, dst_port)
        except asyncio.CancelledError:
            pass  # close()

    async def _forward(self, reader, writer, src, dst, dst_port):
        pair = frozenset((src, dst))
        self.conns.add(writer)
        up_writer = None
        try:
            await self._gate(pair, SYN_RTO)  # the SYN is lost while blackholed
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", dst_port)
            except OSError:
                return  # the peer is down: the client sees the close
            self.conns.add(up_writer)
            await asyncio.gather(self._pump(reader, up_writer, pair), self._pump(up_reader, writer, pair))
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    self.conns.discard(w)
                    w.close()

    async def _pump(self, reader, writer, pair):
        try:
            while True:
                data = await reader.read(65536)
                await self._gate(pair, RTO_MIN)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            writer.close()

    def close(self):
        async def stop():
            for s in self.servers:
                s.close()
            for w in list(self.conns):
                w.close()
            for ev, healed in self.blocked.values():
                healed[0] = time.monotonic()
                ev.set()
            self.blocked.clear()
            for t in asyncio.all_tasks():
                if t is not asyncio.current_task():
                    t.cancel()
            await asyncio.sleep(0.05)
        try:
            self._run(stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
