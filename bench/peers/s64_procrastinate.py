"""S64 workload for procrastinate: N single defer_async() calls from C concurrent asyncio tasks.

  python s64_procrastinate.py N C        (PB_PG_URL = a fresh database; no worker runs)

Untimed: schema applied (as the harness's py/procrastinate_peer.py does), and the psycopg pool
opened with min_size = max_size = C, so all C connections exist before timing.
Timed: C tasks share one App and call noop.defer_async(**payload) (one committed INSERT each).
Prints one JSON line {t0, t1, n, clients, pool, conns} (epoch ms; conns = backends seen on this
database right after the timed part).
"""
import asyncio
import json
import os
import sys
import time

import procrastinate

PG_URL = os.environ.get("PB_PG_URL", "postgresql://postgres@127.0.0.1:55432/postgres")
PAD = "x" * 48


def now_ms() -> float:
    return time.time() * 1000.0


async def main(n: int, c: int) -> None:
    # kwargs go to psycopg_pool.AsyncConnectionPool (procrastinate's default pool factory).
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=PG_URL, min_size=c, max_size=c)
    )

    @app.task(name="noop", queue="bench")
    async def noop(**p):  # never run here: no worker in S64
        pass

    async with app.open_async():  # opens the pool and waits for min_size connections
        await app.schema_manager.apply_schema_async()

        next_i = 0

        async def loop() -> None:
            nonlocal next_i
            while next_i < n:
                i, next_i = next_i, next_i + 1  # no await in between: atomic in asyncio
                await noop.defer_async(i=i, k="s", ts=now_ms(), pad=PAD)

        t0 = now_ms()
        await asyncio.gather(*(loop() for _ in range(c)))
        t1 = now_ms()
        row = await app.connector.execute_query_one_async(
            "select count(*) as n from pg_stat_activity where datname = current_database()"
        )
    print(json.dumps({"t0": t0, "t1": t1, "n": n, "clients": c, "pool": c, "conns": row["n"]}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: s64_procrastinate.py N C")
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
