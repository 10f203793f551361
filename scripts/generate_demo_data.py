"""Generate the example project's demo data (deterministic, no downloads) into data/.

    python scripts/generate_demo_data.py              # (re)generate
    python scripts/generate_demo_data.py --if-missing # only when data/ is incomplete

An e-commerce shop: customers with profile snapshots (some corrected later, same snapshot time,
later ingestion time), products, orders and reviews over the 366 days before --end (default:
the start of today, UTC, so the online store has fresh values to serve; the same --end always
gives the same data).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
FILES = ("customers", "customer_snapshots", "products", "orders", "reviews")
DAYS = 366


def _times(rng: np.random.Generator, n: int, start: pd.Timestamp, days: int) -> pd.Series:
    seconds = rng.integers(0, days * 86400, n)
    return pd.Series(start + pd.to_timedelta(seconds, unit="s")).astype("datetime64[us]")


def generate(out: Path = DATA, end: pd.Timestamp | None = None, n_customers: int = 2000,
             n_products: int = 300, seed: int = 7) -> None:
    """Write the demo Parquet files into ``out``, covering the DAYS days before ``end``."""
    end = end if end is not None else pd.Timestamp.now(tz="UTC").normalize().tz_localize(None)
    start = end - pd.Timedelta(days=DAYS)
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    customer_ids = np.arange(1, n_customers + 1, dtype=np.int64)
    signup = _times(rng, n_customers, start - pd.Timedelta(days=365), 365)
    customers = pd.DataFrame({
        "customer_id": customer_ids,
        "signup_ts": signup,
        "country": rng.choice(["DE", "FR", "US", "GB", "NL"], n_customers),
    })

    # profile snapshots: a few per customer, ~3% corrected later at the same snapshot time
    per = rng.integers(1, 8, n_customers)
    snap_ids = np.repeat(customer_ids, per)
    snap_ts = _times(rng, len(snap_ids), start, DAYS)
    snapshots = pd.DataFrame({
        "customer_id": snap_ids,
        "snapshot_ts": snap_ts,
        "ingested_at": snap_ts + pd.to_timedelta(rng.integers(60, 3600, len(snap_ids)), "s"),
        "segment": rng.choice(["new", "regular", "vip"], len(snap_ids), p=[0.5, 0.4, 0.1]),
        "credit_limit": rng.integers(0, 50, len(snap_ids)).astype(np.int64) * 100,
    })
    fix = snapshots.sample(frac=0.03, random_state=seed).copy()
    fix["ingested_at"] = fix["ingested_at"] + pd.Timedelta(hours=6)
    fix["segment"] = "vip"
    snapshots = pd.concat([snapshots, fix], ignore_index=True)
    # some limits unknown: a null in the latest row must stay null
    snapshots.loc[snapshots.sample(frac=0.02, random_state=seed + 1).index, "credit_limit"] = None
    snapshots["credit_limit"] = snapshots["credit_limit"].astype("Int64")

    products = pd.DataFrame({
        "product_id": np.arange(1, n_products + 1, dtype=np.int64),
        "category": rng.choice(["books", "garden", "toys", "tools", "food"], n_products),
        "list_price": np.round(rng.gamma(2.0, 15.0, n_products) + 1, 2),
    })

    # orders: heavy-tailed activity per customer; ~5% of customers never order
    activity = rng.pareto(1.5, n_customers) * 8
    activity[rng.random(n_customers) < 0.05] = 0
    counts = np.minimum(activity.astype(np.int64), 400)
    order_customers = np.repeat(customer_ids, counts)
    n_orders = len(order_customers)
    order_ts = _times(rng, n_orders, start, DAYS)
    order_products = rng.zipf(1.3, n_orders) % n_products + 1
    quantity = rng.integers(1, 5, n_orders).astype(np.int64)
    orders = pd.DataFrame({
        "order_id": np.arange(1, n_orders + 1, dtype=np.int64),
        "customer_id": order_customers,
        "product_id": order_products.astype(np.int64),
        "order_ts": order_ts,
        "quantity": quantity,
        "amount": np.round(products["list_price"].to_numpy()[order_products - 1] * quantity, 2),
    }).sort_values("order_ts", ignore_index=True)

    reviewed = orders.sample(frac=0.2, random_state=seed)
    reviews = pd.DataFrame({
        "product_id": reviewed["product_id"].to_numpy(),
        "customer_id": reviewed["customer_id"].to_numpy(),
        "review_ts": (reviewed["order_ts"] + pd.to_timedelta(
            rng.integers(1, 14 * 86400, len(reviewed)), "s")).to_numpy(),
        "rating": rng.integers(1, 6, len(reviewed)).astype(np.int64),
    })

    for name, frame in zip(FILES, (customers, snapshots, products, orders, reviews), strict=True):
        tmp = out / f".{name}.parquet.tmp"
        frame.to_parquet(tmp, index=False)
        tmp.replace(out / f"{name}.parquet")
    print(f"wrote {n_customers} customers, {len(snapshots)} snapshots, {n_products} products, "
          f"{n_orders} orders, {len(reviews)} reviews to {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--if-missing", action="store_true",
                        help="do nothing when every data file already exists")
    parser.add_argument("--out", type=Path, default=DATA, help="output directory (default data/)")
    parser.add_argument("--end", type=pd.Timestamp, default=None,
                        help="last day of the data (default: today, UTC)")
    args = parser.parse_args()
    if args.if_missing and all((args.out / f"{n}.parquet").exists() for n in FILES):
        print(f"demo data present in {args.out}")
        return
    generate(args.out, args.end)


if __name__ == "__main__":
    main()
