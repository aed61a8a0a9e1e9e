"""The asyncio flavour's shells: they add only *how to wait* to the core's rules."""
