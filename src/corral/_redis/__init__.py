"""SingleFlight and the weighted Semaphore shared across processes through Redis (the
``corral[redis]`` extra). Public names live in ``corral.redis`` (asyncio) and
``corral.threads.redis`` (threads); ``import corral`` never imports this package."""
