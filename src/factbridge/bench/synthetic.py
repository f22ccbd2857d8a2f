"""Synthetic share records shaped like CooRTweet's German election set, with planted coordinated groups.

Background activity mimics the real set: ~3.8 shares per account on average with
a heavy tail of very active accounts; objects (URLs, hashtags, image hashes,
domains) with Zipf popularity, each shared mostly within a day or so of its
first appearance (news has a life cycle), so popular objects are co-shared by
chance within seconds, as they are in real data. Planted groups are sets of
accounts that share the same new objects within a few seconds of each other,
repeatedly (each member takes part in most, not all, of the group's actions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

SPAN_S = 42 * 24 * 3600  # the German set covers 42 days
START_S = 1_629_064_892


@dataclass
class SyntheticShares:
    frame: Any  # pandas DataFrame: account_id, post_id, url_id, hashtag_id, domain_id, phash_id, timestamp
    planted_accounts: set[str]
    groups: list[list[str]]


def _zipf_codes(rng: np.random.Generator, n: int, universe: int, top_share: float = 0.02) -> np.ndarray:
    """Codes in [0, universe) with Zipf popularity whose exponent makes the most shared object
    take `top_share` of the shares, as in the German set (2 % for links and hashtags)."""
    ranks = np.arange(1, universe + 1, dtype=np.float64)
    lo, hi = 0.0, 3.0
    for _ in range(40):  # bisection on the exponent
        mid = (lo + hi) / 2
        if 1.0 / np.sum(ranks**-mid) < top_share:
            lo = mid
        else:
            hi = mid
    cdf = np.cumsum(ranks**-lo)
    cdf /= cdf[-1]
    return np.searchsorted(cdf, rng.random(n)).astype(np.int64)


def _object_times(rng: np.random.Generator, codes: np.ndarray, universe: int) -> np.ndarray:
    """Share times clustered after each object's birth (exponential with a mean of ~10 hours)."""
    birth = rng.integers(0, SPAN_S, size=universe)
    delay = np.asarray(rng.exponential(36_000, size=codes.shape[0])).astype(np.int64)
    return np.minimum(birth[codes] + delay, SPAN_S - 1)


def generate_shares(
    rows: int,
    *,
    groups: int | None = None,
    group_size: tuple[int, int] = (5, 25),
    actions_per_group: tuple[int, int] = (8, 30),
    participation: float = 0.8,
    spread_s: int = 30,
    seed: int = 7,
) -> SyntheticShares:
    import pandas as pd

    rng = np.random.default_rng(seed)
    n_accounts = max(50, rows * 58_317 // 218_971)
    # Account activity: log-normal weights give a long tail of very active accounts.
    activity = rng.lognormal(0.0, 1.3, size=n_accounts)
    cdf = np.cumsum(activity)
    cdf /= cdf[-1]
    account = np.searchsorted(cdf, rng.random(rows)).astype(np.int64)
    timestamp = rng.integers(0, SPAN_S, size=rows)

    columns: dict[str, np.ndarray] = {}
    # (column, share of rows with a value, distinct objects per row) measured on the German set.
    for name, share, per_row in (("url_id", 0.232, 0.0546), ("hashtag_id", 0.234, 0.0822), ("domain_id", 0.334, 0.0165), ("phash_id", 0.092, 0.0316)):
        universe = max(10, int(rows * per_row))
        has = rng.random(rows) < share
        codes = _zipf_codes(rng, int(has.sum()), universe)
        values = np.full(rows, np.nan)
        values[has] = codes
        columns[name] = values
        if name == "url_id":  # a shared link's time follows its object's life cycle
            timestamp[has] = _object_times(rng, codes, universe)

    extra: dict[str, list[np.ndarray]] = {"account": [], "timestamp": [], "url_id": [], "hashtag_id": []}
    planted: list[list[int]] = []
    n_groups = groups if groups is not None else max(3, rows // 40_000)
    next_url = int(np.nanmax(columns["url_id"])) + 1 if rows else 0
    next_tag = int(np.nanmax(columns["hashtag_id"])) + 1 if rows else 0
    for _ in range(n_groups):
        size = int(rng.integers(group_size[0], group_size[1] + 1))
        members = rng.choice(n_accounts, size=size, replace=False)
        planted.append(members.tolist())
        actions = int(rng.integers(actions_per_group[0], actions_per_group[1] + 1))
        for _ in range(actions):
            start = int(rng.integers(0, SPAN_S - spread_s))
            takers = members[rng.random(size) < participation]
            if takers.size < 2:
                takers = members[:2]
            use_url = rng.random() < 0.6
            obj = next_url if use_url else next_tag
            if use_url:
                next_url += 1
            else:
                next_tag += 1
            extra["account"].append(takers)
            extra["timestamp"].append(start + rng.integers(0, spread_s + 1, size=takers.size))
            extra["url_id"].append(np.full(takers.size, float(obj) if use_url else np.nan))
            extra["hashtag_id"].append(np.full(takers.size, np.nan if use_url else float(obj)))
    added = {k: np.concatenate(v) if v else np.zeros(0) for k, v in extra.items()}
    m = added["account"].shape[0]
    # Planted shares are spread through the table, as they would be in a real export.
    at = np.sort(rng.integers(0, rows + 1, size=m))
    frame = pd.DataFrame({
        "account_id": np.insert(account, at, added["account"].astype(np.int64)),
        "timestamp": np.insert(timestamp, at, added["timestamp"].astype(np.int64)),
        "url_id": np.insert(columns["url_id"], at, added["url_id"]),
        "hashtag_id": np.insert(columns["hashtag_id"], at, added["hashtag_id"]),
        "domain_id": np.insert(columns["domain_id"], at, np.full(m, np.nan)),
        "phash_id": np.insert(columns["phash_id"], at, np.full(m, np.nan)),
    })
    del account, timestamp, columns
    frame["account_id"] = "acc_" + frame["account_id"].astype(str)
    frame.insert(1, "post_id", np.arange(len(frame), dtype=np.int64))
    frame["timestamp"] = (frame["timestamp"] + START_S).astype(np.float64)
    names = [[f"acc_{m}" for m in g] for g in planted]
    return SyntheticShares(frame=frame, planted_accounts={a for g in names for a in g}, groups=names)


def planted_precision_recall(planted: set[str], found: set[str]) -> tuple[float, float]:
    hit = len(planted & found)
    return (hit / len(found) if found else 0.0), (hit / len(planted) if planted else 0.0)
