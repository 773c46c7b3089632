"""A simulated trading engine that uses the client library exactly as a user would.

Run one with `python -m hub.simulator --engine fno --url ws://127.0.0.1:8765/ws/engine`. Signals
steer it: SIGUSR1 stalls its loop for a while (heartbeats continue, loop_tick does not move),
SIGUSR2 puts it in error for a while, SIGTERM stops it gracefully (bye). `engine-hub demo` starts
three of these and sends those signals now and then.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import random
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from hub.client import EngineClient

__all__ = ["PROFILES", "Simulator", "main"]

log = logging.getLogger("engine")


@dataclass(frozen=True)
class Profile:
    """What one simulated engine trades and how busy it is."""

    symbols: tuple[str, ...]
    strategies: tuple[str, ...]
    base_price: float
    cycle_seconds: float


PROFILES = {
    "fno": Profile(
        ("NIFTY-FUT", "BANKNIFTY-FUT", "FINNIFTY-FUT"), ("momentum", "breakout"), 22500.0, 0.5
    ),
    "equity": Profile(
        ("RELIANCE", "TCS", "INFY", "HDFCBANK", "ICICIBANK", "SBIN", "LT", "ITC"),
        ("mean_reversion", "pairs"),
        1500.0,
        0.7,
    ),
    "options": Profile(
        ("NIFTY 22500 CE", "NIFTY 22500 PE", "BANKNIFTY 48000 CE", "BANKNIFTY 48000 PE"),
        ("straddle", "iron_condor", "delta_hedge"),
        180.0,
        0.6,
    ),
}


@dataclass
class Simulator:
    """The engine loop: ticks, decides, trades and logs through an `EngineClient`."""

    name: str
    client: EngineClient
    profile: Profile
    rng: random.Random
    tick: int = 0
    positions: dict[str, float] = field(default_factory=dict)
    prices: dict[str, float] = field(default_factory=dict)
    pnl: float = 0.0
    stalled_until: float = 0.0
    error_until: float = 0.0
    running: bool = True
    orders: int = 0

    def health(self) -> dict[str, Any]:
        """Heartbeat fields, called by the client's automatic heartbeats (state: `started`, `step`)."""
        return {
            "loop_tick": self.tick,
            "universe_size": len(self.profile.symbols),
            "open_positions": sum(1 for q in self.positions.values() if q),
        }

    def started(self) -> None:
        """The engine state a real engine reports once (the client's state helpers)."""
        client, profile = self.client, self.profile
        client.set_bot_state(run_interval_seconds=profile.cycle_seconds, simulated=True)
        client.set_trading_hours_active(True, "09:15-15:30 IST")
        client.set_active_strategies(profile.strategies, total=len(profile.strategies))

    def report_pnl(self) -> None:
        """Realised P&L so far, open positions marked to the last price, and gross exposure."""
        unrealized = exposure = 0.0
        for symbol, quantity in self.positions.items():
            price = self.prices.get(symbol, 0.0)
            exposure += abs(quantity) * price
            unrealized += quantity * price * self.rng.gauss(0, 0.001)  # a mark-to-market wobble
        self.client.report_pnl(
            realized=round(self.pnl, 2),
            unrealized=round(unrealized, 2),
            exposure=round(exposure, 2),
            currency="INR",
        )

    def price(self, symbol: str) -> float:
        """A random walk per symbol."""
        base = self.prices.get(symbol) or self.profile.base_price * self.rng.uniform(0.5, 1.5)
        price = max(0.05, base * math.exp(self.rng.gauss(0, 0.002)))
        self.prices[symbol] = price
        return round(price, 2)

    def step(self) -> None:
        """One loop iteration: indicators, maybe a signal and an order, a cycle event, metrics."""
        now = time.time()
        if now < self.stalled_until:
            return  # stuck: the loop does not advance, heartbeats keep going
        started = time.perf_counter()
        self.tick += 1
        client, rng = self.client, self.rng
        symbol = rng.choice(self.profile.symbols)
        price = self.price(symbol)
        rsi = round(rng.uniform(10, 90), 1)
        client.publish("indicator_event", {"symbol": symbol, "rsi": rsi, "price": price})
        client.set_gauge("price", price, symbol=symbol)
        if rsi < 25 or rsi > 75:
            self.signal(symbol, price, rsi)
        if self.tick % 20 == 0:
            client.publish(
                "universe_scan",
                {"scanned": len(self.profile.symbols), "candidates": rng.randint(0, 3)},
            )
        if self.tick % 10 == 0:
            self.report_pnl()
        if self.tick % 30 == 0:
            client.publish("performance_update", {"pnl": round(self.pnl, 2), "trades": self.orders})
            client.set_gauge("pnl", self.pnl)
        if rng.random() < 0.01:
            client.record_error(
                "DataFeedTimeout", f"no quote for {symbol} within 2s", {"symbol": symbol}
            )
            client.increment("errors")  # the engine page's error-rate chart
            log.warning("quote timeout for %s; using last price", symbol)
        elif rng.random() < 0.05:
            log.debug("tick %d: %s at %.2f, rsi %.1f", self.tick, symbol, price, rsi)
        duration = time.perf_counter() - started + rng.uniform(0.002, 0.03)
        client.record_cycle(round(duration, 4), self.tick)
        failed = now < self.error_until
        client.set_last_cycle(
            not failed, round(duration, 4), "broker session expired" if failed else None
        )
        client.set_next_cycle_time(now + self.profile.cycle_seconds)
        client.record_timing("cycle.seconds", duration)
        client.increment("cycles")

    def signal(self, symbol: str, price: float, rsi: float) -> None:
        """Decide, explain the decision, and place an order that fills or is rejected."""
        client, rng = self.client, self.rng
        side = "long" if rsi < 25 else "short"
        strategy = rng.choice(self.profile.strategies)
        confidence = round(rng.uniform(0.55, 0.95), 2)
        reason = f"RSI {rsi} {'oversold' if side == 'long' else 'overbought'}"
        # One chain per signal (docs/client.md#causal-chains): each step names the one before.
        cycle = f"{self.name}-{self.tick}"
        signal = client.record_signal(
            symbol,
            side,
            price=price,
            strategy=strategy,
            confidence=confidence,
            reason=reason,
            cycle_id=cycle,
        )
        decision = client.record_decision(
            side,
            symbol=symbol,
            reason=reason,
            inputs={"rsi": rsi, "price": price},
            threshold=25 if side == "long" else 75,
            cycle_id=cycle,
            parent=signal,
        )
        client.increment("signals", side=side, strategy=strategy)
        self.orders += 1
        order_id = f"{self.name}-{self.orders}"
        quantity = rng.choice((25, 50, 75, 100))
        order_side = "buy" if side == "long" else "sell"
        order = client.record_order(
            order_id,
            symbol,
            order_side,
            quantity,
            price=price,
            status="create",
            cycle_id=cycle,
            parent=decision,
        )
        if rng.random() < 0.12:
            client.record_order(
                order_id,
                symbol,
                order_side,
                quantity,
                price=price,
                status="reject",
                reason="margin exceeded",
                cycle_id=cycle,
                parent=order,
            )
            client.increment("orders.rejected")  # the engine page's reject-rate chart
            log.warning("order %s rejected: margin exceeded", order_id)
            return
        client.record_order(
            order_id,
            symbol,
            order_side,
            quantity,
            price=price,
            status="fill",
            cycle_id=cycle,
            parent=order,
        )
        signed = quantity if order_side == "buy" else -quantity
        self.positions[symbol] = self.positions.get(symbol, 0) + signed
        self.pnl += rng.gauss(0, 50)
        client.publish(
            "position_event",
            {"symbol": symbol, "quantity": self.positions[symbol], "avg_price": price},
        )
        log.info("filled %s %s %d @ %.2f", order_side, symbol, quantity, price)

    def run(self) -> None:
        """Loop until stopped; recover from a simulated error after a while."""
        cycle = self.profile.cycle_seconds
        while self.running:
            now = time.time()
            if self.error_until and now >= self.error_until:
                self.error_until = 0.0
                self.client.heartbeat(status="running", last_error=None)
                log.info("recovered from error")
            self.step()
            time.sleep(cycle * self.rng.uniform(0.8, 1.2))

    # Signal handlers (the demo's incidents).

    def stall(self, signum: int, frame: FrameType | None) -> None:
        """SIGUSR1: the loop stops advancing for 20 s."""
        self.stalled_until = time.time() + 20
        log.error("simulated stall: the loop is stuck waiting on a lock")

    def fail(self, signum: int, frame: FrameType | None) -> None:
        """SIGUSR2: report an error state for 15 s."""
        self.error_until = time.time() + 15
        try:
            raise ConnectionError("broker session expired")
        except ConnectionError as exc:
            self.client.mark_error(exc)
            log.exception("broker connection lost")

    def stop(self, signum: int, frame: FrameType | None) -> None:
        """SIGTERM/SIGINT: finish the loop and stop gracefully."""
        self.running = False


def main(argv: Sequence[str] | None = None) -> int:
    """Run one simulated engine until SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m hub.simulator", description="A simulated trading engine."
    )
    parser.add_argument("--engine", choices=sorted(PROFILES), required=True)
    parser.add_argument("--url", default="ws://127.0.0.1:8765/ws/engine")
    parser.add_argument("--mode", default="paper")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--heartbeat-interval", type=float, default=2.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    sim: Simulator | None = None

    def health() -> dict[str, Any]:
        return sim.health() if sim is not None else {}

    client = EngineClient(
        args.url,
        engine=args.engine,
        mode=args.mode,
        heartbeat_interval=args.heartbeat_interval,
        heartbeat_provider=health,
        meta={"strategy_set": list(PROFILES[args.engine].strategies), "simulated": True},
    )
    sim = Simulator(args.engine, client, PROFILES[args.engine], random.Random(args.seed))
    engine_log = logging.getLogger("engine")
    engine_log.setLevel(logging.DEBUG)
    engine_log.addHandler(client.log_handler(logging.DEBUG))
    engine_log.propagate = False
    signal.signal(signal.SIGUSR1, sim.stall)
    signal.signal(signal.SIGUSR2, sim.fail)
    signal.signal(signal.SIGTERM, sim.stop)
    signal.signal(signal.SIGINT, sim.stop)
    with client:
        client.heartbeat(status="running", **sim.health())
        sim.started()
        sim.report_pnl()  # flat at the start, so the card shows P&L from the first heartbeat
        engine_log.info("engine %s started (pid %d)", args.engine, os.getpid())
        sim.run()
        engine_log.info("engine %s stopping", args.engine)
        client.mark_stopped()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
