"""Drives `codeintel mcp` with the official MCP Python SDK (PyPI `mcp`), as a coding agent would.

    client.py stdio COMMAND [ARG...]   < calls.json
    client.py http URL                 < calls.json

`calls.json` is a list of `[tool, arguments]`. Prints one JSON object: the tools the server
lists (name -> input schema and description) and, per call, whether it was a tool error, its
text, and the progress messages that arrived while it ran (the `ask` tokens).
"""

import asyncio
import json
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client


async def run(session, calls):
    await session.initialize()
    listed = await session.list_tools()
    out = {
        "tools": {t.name: {"schema": t.input_schema, "description": t.description} for t in listed.tools},
        "calls": [],
    }
    for name, args in calls:
        progress = []

        async def on_progress(value, total, message, progress=progress):
            progress.append(message or "")

        r = await session.call_tool(name, args, progress_callback=on_progress)
        text = "".join(c.text for c in r.content if getattr(c, "type", "") == "text")
        out["calls"].append(
            {"tool": name, "args": args, "is_error": bool(r.is_error), "text": text, "progress": progress}
        )
    return out


async def main():
    mode, target = sys.argv[1], sys.argv[2]
    calls = json.load(sys.stdin)
    if mode == "stdio":
        params = StdioServerParameters(command=target, args=sys.argv[3:])
        async with stdio_client(params) as streams:
            async with ClientSession(streams[0], streams[1]) as s:
                out = await run(s, calls)
    elif mode == "http":
        async with streamable_http_client(target) as streams:
            async with ClientSession(streams[0], streams[1]) as s:
                out = await run(s, calls)
    else:
        raise SystemExit(f"mode must be stdio or http, got {mode}")
    print(json.dumps(out))


asyncio.run(main())
