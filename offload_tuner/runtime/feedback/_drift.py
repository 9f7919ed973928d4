"""The drift check: when a kernel's timed samples are due, compare them with its model in the installed profile
(the rule of ``offload-tuner drift``) and say once per kernel when they no longer match."""

from __future__ import annotations

from offload_tuner.runtime import _log, _state
from offload_tuner.runtime._observe import Observer
from offload_tuner.runtime._profile import Profile
from offload_tuner.runtime._stats import KernelStats
from offload_tuner.runtime._warn import warn_once, warned


class DriftCheck(Observer):
    """Subscribed at import of ``offload_tuner``; runs on the thread whose call was timed, at most once per
    ``_stats.DRIFT_CHECK_INTERVAL_S`` per kernel, and never again for a kernel once it drifted."""

    def samples_due(self, stats: KernelStats) -> None:
        key = stats.spec.key
        if f"drift:{key}" in warned:
            return
        profile = _state.current().profile
        if not isinstance(profile, Profile) or "transport" not in profile.data:
            return
        entry = profile.kernels.get(key)
        if entry is None or entry.status != "ok" or "costs" not in entry.data:
            return
        # Imported on use: the models' statistics are not every service's business until a check is due.
        from offload_tuner.runtime.feedback._retune import drift, traffic_of

        try:
            results = drift({**profile.data, "kernels": {key: entry.data}}, {key: traffic_of(stats)})
        except Exception:  # a profile the runtime can use but whose models do not parse: nothing to compare
            return
        drifted = [b for r in results for b in r.drifted]
        if drifted:
            sentence = drifted[0].sentence()
            warn_once(
                f"drift:{key}",
                f"offload-tuner: kernel {key} no longer behaves as calibrated in {profile.source}: "
                f"{sentence}; run `offload-tuner calibrate` on this host again "
                f"(`offload-tuner drift --stats` shows every size; said once per kernel)",
            )
            _log.event(
                "drift_detected",
                _log.WARNING,
                f"kernel {key} no longer behaves as calibrated in {profile.source}: {sentence}",
                kernel=key,
                backend=profile.executor_kind,
                reason=sentence,
                source=profile.source,
            )
