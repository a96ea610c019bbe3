"""sim: a KuCoin-compatible spot exchange simulator, a program of its own (docs/design.md 7).

Start it with `python -m sim --help` from the repository root. The engine (run.py with
`venue = sim`), the tests (tests/conftest.py) and the benchmarks start it as a child
process; no engine module imports it.

Modules:
  server.py      CLI, the aiohttp application on one port, the /sim/* control and
                 inspection API, the market loop task
  rest.py        KuCoin's REST API: routes, signing checks, rate-limit pools, handlers
  ws.py          KuCoin's WebSocket: welcome, ping/pong, subscriptions, public and private
                 topics
  exchange.py    the account and HF orders: validation, holds, matching, settlement, events
  market.py      the symbol subset, fair prices, moving books, level2 sequencing
  book.py        one symbol's book in integer units and the exact taker walk
  mispricing.py  planted triangular mispricings and their taking by other traders
  faults.py      faults on demand, set by POST /sim/control
"""
