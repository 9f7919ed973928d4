"""Records the clustering kernels work on, and seeded generators of realistic, clustered data.

The records are frozen dataclasses of hashable, picklable fields (frozensets, tuples of pairs, dates)
so they cross a process boundary with the standard pickle and cannot be mutated by a kernel. Mappings
are stored as sorted tuples of ``(key, value)`` pairs: that keeps them hashable and gives equal records
equal pickles. Use :meth:`Observation.header_map` / :meth:`Identity.feature_map` to read them as dicts.

The generators draw a few latent groups and scatter noisy members around each, plus unrelated
singletons, so a clusterer has real structure to find and its output is checkable by eye.
"""

from __future__ import annotations

import datetime as _dt
import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

V = TypeVar("V")


def _pairs(mapping: Mapping[str, V] | Iterable[tuple[str, V]]) -> tuple[tuple[str, V], ...]:
    """A mapping (or pairs) as a sorted tuple of pairs: hashable, picklable, order-independent."""
    items = mapping.items() if isinstance(mapping, Mapping) else mapping
    return tuple(sorted(items))


@dataclass(frozen=True, slots=True)
class Observation:
    """What one sensor saw from one source address: the unit the per-IP clusterer groups.

    ``asn`` and ``tls_ja3`` are optional because enrichment often fails; a missing value is
    "unknown", not "different", so the clusterer leaves it out rather than counting it against a match.
    Sets and mappings passed as other types are normalised to frozensets and sorted pairs.
    """

    src_ip: str
    ports: frozenset[int]
    user_agents: frozenset[str]
    headers: tuple[tuple[str, str], ...] = ()
    asn: int | None = None
    tls_ja3: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "ports", frozenset(self.ports))
        object.__setattr__(self, "user_agents", frozenset(self.user_agents))
        object.__setattr__(self, "headers", _pairs(self.headers))

    @property
    def subnet(self) -> str:
        """The /24 of an IPv4 ``src_ip`` (the whole address otherwise): hosts rented together share it."""
        head, dot, _ = self.src_ip.rpartition(".")
        return head if dot else self.src_ip

    def header_map(self) -> dict[str, str]:
        return dict(self.headers)


@dataclass(frozen=True, slots=True)
class Identity:
    """One report's view of a threat actor: the unit the campaign clusterer groups.

    Different reports name the same actor differently, so ``actor`` is a label for people, not a
    feature; the clusterer matches on infrastructure, tooling and the weighted behaviour profile
    (``features``: feature name -> weight in (0, 1]).
    """

    actor: str
    infrastructure: frozenset[str]
    tools: frozenset[str]
    features: tuple[tuple[str, float], ...] = ()
    first_seen: _dt.date | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "infrastructure", frozenset(self.infrastructure))
        object.__setattr__(self, "tools", frozenset(self.tools))
        object.__setattr__(self, "features", _pairs(self.features))

    def feature_map(self) -> dict[str, float]:
        return dict(self.features)


# ------------------------------------------------------------------------------------------ vocabularies

PORTS: tuple[int, ...] = (
    21,
    22,
    23,
    25,
    53,
    80,
    110,
    123,
    143,
    161,
    389,
    443,
    445,
    993,
    995,
    1433,
    1521,
    2375,
    3306,
    3389,
    5432,
    5900,
    6379,
    8000,
    8080,
    8443,
    9200,
    11211,
    27017,
)
USER_AGENTS: tuple[str, ...] = (
    "curl/7.88.1",
    "curl/8.4.0",
    "python-requests/2.31.0",
    "Go-http-client/1.1",
    "Go-http-client/2.0",
    "zgrab/0.x",
    "masscan/1.3",
    "Wget/1.21.3",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
    "Mozilla/5.0 (X11; Linux x86_64)",
    "Mozilla/5.0 (compatible; CensysInspect/1.1)",
    "Nmap Scripting Engine",
    "okhttp/4.11.0",
    "libwww-perl/6.72",
)
HEADER_VALUES: dict[str, tuple[str, ...]] = {
    "accept": ("*/*", "text/html", "application/json", "text/html,application/xhtml+xml"),
    "accept-encoding": ("gzip", "gzip, deflate", "identity", "br"),
    "accept-language": ("en-US", "en", "zh-CN", "ru-RU", "de-DE"),
    "connection": ("close", "keep-alive"),
    "cache-control": ("no-cache", "max-age=0"),
    "upgrade-insecure-requests": ("1",),
    "x-requested-with": ("XMLHttpRequest",),
}
TOOLS: tuple[str, ...] = (
    "cobalt-strike",
    "sliver",
    "mimikatz",
    "impacket",
    "bloodhound",
    "rclone",
    "anydesk",
    "plink",
    "ngrok",
    "chisel",
    "metasploit",
    "empire",
    "psexec",
    "adfind",
    "netscan",
    "7zip",
)
FEATURES: tuple[str, ...] = (
    "ttp:T1059",
    "ttp:T1566",
    "ttp:T1078",
    "ttp:T1190",
    "ttp:T1486",
    "ttp:T1021",
    "ttp:T1003",
    "ttp:T1105",
    "target:finance",
    "target:health",
    "target:energy",
    "target:government",
    "lang:ru",
    "lang:zh",
    "lang:en",
    "tz:+3",
    "tz:+8",
    "tz:-5",
    "infra:vps",
    "infra:residential",
)
_ADJECTIVES = ("amber", "cobalt", "crimson", "silent", "frozen", "hollow", "iron", "velvet", "wicked", "zinc")
_ANIMALS = ("badger", "falcon", "heron", "jackal", "lynx", "mantis", "otter", "raven", "viper", "wolf")
_EPOCH = _dt.date(2021, 1, 1)


def _group_count(n: int) -> int:
    """About sqrt(n) latent groups: clusters stay a few dozen strong at every size."""
    return max(1, math.isqrt(n))


def _random_ip(rng: random.Random, subnet: str | None = None) -> str:
    if subnet is None:
        subnet = f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}"
    return f"{subnet}.{rng.randrange(1, 255)}"


def _jitter(rng: random.Random, base: Iterable[V], pool: tuple[V, ...]) -> frozenset[V]:
    """A group's set as one member sees it: sometimes one element missing, sometimes one extra."""
    items = set(base)
    if len(items) > 1 and rng.random() < 0.4:
        items.discard(rng.choice(sorted(items)))  # sorted: set order must not leak into the seed stream
    if rng.random() < 0.3:
        items.add(rng.choice(pool))
    return frozenset(items)


# ---------------------------------------------------------------------------------------- observations


@dataclass(frozen=True, slots=True)
class _ObservationProfile:
    subnet: str
    ports: tuple[int, ...]
    user_agents: tuple[str, ...]
    headers: dict[str, str]
    asn: int
    tls_ja3: str


def _observation_profile(rng: random.Random) -> _ObservationProfile:
    keys = rng.sample(sorted(HEADER_VALUES), rng.randint(3, 5))
    return _ObservationProfile(
        subnet=_random_ip(rng).rpartition(".")[0],
        ports=tuple(rng.sample(PORTS, rng.randint(3, 6))),
        user_agents=tuple(rng.sample(USER_AGENTS, rng.randint(1, 3))),
        headers={k: rng.choice(HEADER_VALUES[k]) for k in keys},
        asn=rng.randrange(1000, 65000),
        tls_ja3=f"{rng.getrandbits(128):032x}",
    )


def _observe(rng: random.Random, p: _ObservationProfile) -> Observation:
    headers = dict(p.headers)
    if rng.random() < 0.3:  # one header value differs (another client build, a proxy in between)
        key = rng.choice(sorted(headers))
        headers[key] = rng.choice(HEADER_VALUES[key])
    return Observation(
        src_ip=_random_ip(rng, p.subnet),
        ports=_jitter(rng, p.ports, PORTS),
        user_agents=_jitter(rng, p.user_agents, USER_AGENTS),
        headers=_pairs(headers),
        asn=p.asn if rng.random() < 0.8 else None,
        tls_ja3=p.tls_ja3 if rng.random() < 0.6 else None,
    )


def make_observations(n: int, seed: int) -> list[Observation]:
    """``n`` observations: ~sqrt(n) scanning groups with noisy members, and ~10% unrelated singletons."""
    rng = random.Random(seed)
    profiles = [_observation_profile(rng) for _ in range(_group_count(n))]
    return [_observe(rng, _observation_profile(rng) if rng.random() < 0.1 else rng.choice(profiles)) for _ in range(n)]


# ------------------------------------------------------------------------------------------ identities


@dataclass(frozen=True, slots=True)
class _ActorProfile:
    name: str
    infrastructure: tuple[str, ...]
    tools: tuple[str, ...]
    features: dict[str, float]
    active_from: int
    """Days since ``_EPOCH``."""


def _actor_profile(rng: random.Random) -> _ActorProfile:
    subnet = _random_ip(rng).rpartition(".")[0]
    return _ActorProfile(
        name=f"{rng.choice(_ADJECTIVES)}-{rng.choice(_ANIMALS)}",
        infrastructure=tuple(_random_ip(rng, subnet if rng.random() < 0.5 else None) for _ in range(rng.randint(4, 8))),
        tools=tuple(rng.sample(TOOLS, rng.randint(2, 5))),
        features={f: round(rng.uniform(0.2, 1.0), 2) for f in rng.sample(FEATURES, rng.randint(4, 7))},
        active_from=rng.randrange(0, 900),
    )


def _report(rng: random.Random, p: _ActorProfile) -> Identity:
    features = {f: min(1.0, max(0.05, round(w + rng.uniform(-0.15, 0.15), 2))) for f, w in p.features.items()}
    if rng.random() < 0.3:
        features[rng.choice(FEATURES)] = round(rng.uniform(0.1, 0.6), 2)
    seen = _EPOCH + _dt.timedelta(days=p.active_from + rng.randrange(0, 60))
    return Identity(
        actor=f"{p.name}-{rng.randrange(100):02d}",  # each report's own alias
        infrastructure=_jitter(rng, p.infrastructure, (_random_ip(rng),)),
        tools=_jitter(rng, p.tools, TOOLS),
        features=_pairs(features),
        first_seen=seen if rng.random() < 0.7 else None,
    )


def make_identities(n: int, seed: int) -> list[Identity]:
    """``n`` per-report identities: ~sqrt(n) actors seen in several reports, and ~10% one-offs."""
    rng = random.Random(seed)
    actors = [_actor_profile(rng) for _ in range(_group_count(n))]
    return [_report(rng, _actor_profile(rng) if rng.random() < 0.1 else rng.choice(actors)) for _ in range(n)]
