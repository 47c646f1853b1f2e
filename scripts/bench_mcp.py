"""Tool-call latency of `codeintel mcp` as an agent sees it (the official MCP Python SDK over
stdio, against a running mesh): each tool called N times in turn after a warm-up, p50/p95 in ms.

    $CODEINTEL_CACHE/venv-mcp/bin/python scripts/bench_mcp.py CODEINTEL_BIN REPO PATH SYMBOL [N]

REPO/PATH name an indexed file (for read_code and list_symbols), SYMBOL a defined name (for
find_definition and find_references). Extra `codeintel` arguments come from CODEINTEL_ARGS.
"""

import asyncio
import os
import shlex
import statistics
import sys
import time

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


async def main():
    binary, repo, path, symbol = sys.argv[1:5]
    n = int(sys.argv[5]) if len(sys.argv) > 5 else 50
    extra = shlex.split(os.environ.get("CODEINTEL_ARGS", ""))
    calls = [
        ("search_code", {"query": "how are requests retried", "repos": [repo], "limit": 8}),
        ("search_code", {"query": symbol, "repos": [repo], "limit": 8}),
        ("find_definition", {"symbol": symbol, "repo": repo}),
        ("find_references", {"symbol": symbol, "repo": repo}),
        ("read_code", {"repo": repo, "path": path, "start_line": 1, "end_line": 80}),
        ("list_symbols", {"repo": repo, "path": path}),
    ]
    params = StdioServerParameters(command=binary, args=extra + ["mcp"])
    async with stdio_client(params) as streams:
        async with ClientSession(streams[0], streams[1]) as s:
            await s.initialize()
            print(f"{'tool':<16} {'arguments':<40} {'calls':>5} {'p50 ms':>8} {'p95 ms':>8} {'chars':>6}")
            for name, args in calls:
                for _ in range(3):
                    await s.call_tool(name, args)
                times, size = [], 0
                for _ in range(n):
                    t = time.perf_counter()
                    r = await s.call_tool(name, args)
                    times.append((time.perf_counter() - t) * 1000)
                    if r.is_error:
                        raise SystemExit(f"{name} failed: {r.content[0].text}")
                    size = sum(len(c.text) for c in r.content)
                label = ", ".join(f"{k}={v}" for k, v in args.items() if k != "repo" and k != "repos")[:40]
                print(f"{name:<16} {label:<40} {n:>5} {statistics.median(times):>8.1f} {pct(times, 95):>8.1f} {size:>6}")


asyncio.run(main())
