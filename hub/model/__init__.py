"""The hub's typed model: records as stored, phases, and the shapes of its answers.

Pure data shared by every layer, the CLI included. It must never do I/O or import
asyncio, aiohttp, the cluster client or Helm: the CLI imports it on every start.
"""
