"""corral's I/O-free core: the rules of each primitive, written once.

Every module here decides *whom to wake* under a lock and never waits. The asyncio shells
(``corral``) and the thread shells (``corral.threads``) supply the waiting: an asyncio
future or a parked thread, both behind the one :class:`~corral._core.waiter.Waiter`
protocol. That is why one object can be shared by threads and by tasks on any loop.
"""
