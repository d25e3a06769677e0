"""One table for every benchmark: figure, reference measured in the same run, the seed's, the target.

Every benchmark runs several times; the table shows each figure's median over the runs and its min
and max (each cell of those columns computed figure by figure, :mod:`bench.repeats`), the verdict
on the median. The seed figures are the Celery design's, quoted from issue #8. Nothing here fails
on a number: a figure below target is marked ``below`` in the table and left for the next step.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

__all__ = ["header", "rows", "table", "view", "write"]

_SERVICES = ("gateway", "orchestrator", "provider-adapter", "storage")


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None or value != value:  # NaN
        return "–"
    return f"{value:,.{digits}f}"


def _verdict(ok: bool | None) -> str:
    return "–" if ok is None else ("ok" if ok else "below")


def _row(
    bench: str, figure: str, value: str, reference: str, seed: str, target: str, ok: bool | None
) -> dict[str, str]:
    return {
        "bench": bench,
        "figure": figure,
        "value": value,
        "reference": reference,
        "seed": seed,
        "target": target,
        "verdict": _verdict(ok),
    }


def _replicas_note(figures: dict[str, Any]) -> str:
    replicas = figures.get("adapter_replicas", 1)
    return f", {replicas} adapter processes" if replicas > 1 else ""


def _split_cpu(figures: dict[str, Any]) -> str:
    parts = " / ".join(_fmt(figures["cpu_percent"][name], 0) for name in _SERVICES)
    return f"{_fmt(figures['cpu_percent_services'])} ({parts})"


def rows(results: dict[str, Any]) -> list[dict[str, str]]:
    """The table's rows from whatever benchmarks ran."""
    out: list[dict[str, str]] = []
    t = results.get("throughput")
    if t and "error" not in t:
        ref = t.get("reference_pipeline", {})
        # The targets are for the instant work; with the provider's own time in it, the rate is the
        # provider's, and the figures to read are the time added to it and the CPU.
        instant = not t.get("work", {}).get("realistic")
        out.append(
            _row(
                "throughput",
                f"generations/s ({t['completed']}/{t['generations']} done)",
                _fmt(t["generations_per_s"]),
                f"bare pipeline {_fmt(ref.get('generations_per_s'))}/s",
                "36" if instant else "",
                "≥ 180" if instant else "",
                t["generations_per_s"] >= 180 if instant else None,
            )
        )
        if "steady_generations_per_s" in t:
            out.append(
                _row(
                    "throughput",
                    "generations/s, steady (10–90 %)",
                    _fmt(t["steady_generations_per_s"]),
                    "",
                    "36" if instant else "",
                    "≥ 180" if instant else "",
                    t["steady_generations_per_s"] >= 180 if instant else None,
                )
            )
        ratios = t.get("ratio_to_bare_pipeline", {})
        if ratios.get("generations_per_s") is not None:
            out.append(
                _row(
                    "throughput",
                    "generations/s ÷ bare pipeline (same run)",
                    _fmt(ratios["generations_per_s"], 2),
                    f"{ref.get('event_loop', 'asyncio')}, before and after the batch",
                    "",
                    "≥ 1.00",
                    ratios["generations_per_s"] >= 1.0,
                )
            )
        cpu = t["cpu_ms_per_generation"]
        out.append(
            _row(
                "throughput",
                "CPU ms/generation, 4 services",
                _fmt(t["cpu_ms_per_generation_services"]),
                f"bare pipeline {_fmt(ref.get('cpu_ms_per_generation'))} ms"
                + (f" ({_fmt(ratios['cpu_services'], 2)} ×)" if ratios.get("cpu_services") else ""),
                "37",
                "",
                None,
            )
        )
        if "cpu_ms_per_generation_all_in" in t:
            out.append(
                _row(
                    "throughput",
                    "CPU ms/generation, all-in (4 services + NATS + database + S3)",
                    _fmt(t["cpu_ms_per_generation_all_in"]),
                    f"bare pipeline + S3/NATS/db {_fmt(ref.get('cpu_ms_per_generation_all_in'))} ms"
                    + (f" ({_fmt(ratios['cpu_all_in'], 2)} ×)" if ratios.get("cpu_all_in") else ""),
                    "",
                    "",
                    None,
                )
            )
        for name in ("gateway", "orchestrator", "provider-adapter", "storage", "nats", "s3", "database"):
            out.append(
                _row("throughput", f"  CPU ms/generation {name}", _fmt(cpu.get(name)), "", "", "", None)
            )
        out.append(
            _row(
                "throughput",
                "CPU % of other people's processes (shared machine)",
                _fmt(t.get("cpu_percent", {}).get("others")),
                "",
                "",
                "",
                None,
            )
        )
        out.append(
            _row(
                "throughput",
                "latency submit→COMPLETED p50 / p99 s",
                f"{_fmt(t['latency_s'].get('p50'), 2)} / {_fmt(t['latency_s'].get('p99'), 2)}",
                f"poll interval {t.get('poll_interval_s', 1):g} s",
                "",
                "",
                None,
            )
        )
    out.extend(_realistic_rows(t))
    for key in sorted(k for k in results if k.startswith("inflight-")):
        f = results[key]
        if not f or "error" in f:  # every run of it failed: nothing to show
            continue
        interval = f["interval_s"]
        label = f"in-flight {interval:g}s"
        ref_ms = f.get("reference_httpx_get", {}).get("cpu_ms_per_get")
        out.append(
            _row(
                label,
                f"in flight at provider (of {f['requested']})",
                str(f["in_flight"]),
                "",
                "10,000",
                "10,000",
                f["in_flight"] >= f["requested"],
            )
        )
        seed_polls = "53–107 of 1,000" if interval == 10 else ""
        over = f.get("polls_over_intended")
        out.append(
            _row(
                label,
                "polls/s achieved / intended" + (" (achieved ÷ intended)" if over is not None else ""),
                f"{_fmt(f['polls_per_s'])} / {_fmt(f['intended_polls_per_s'])}"
                + (f" ({_fmt(over, 3)})" if over is not None else ""),
                "",
                seed_polls,
                "= intended (± 5 %)",
                # Extra polls are cost, not achievement: too many fall short of the target too.
                0.95 * f["intended_polls_per_s"] <= f["polls_per_s"] <= 1.05 * f["intended_polls_per_s"],
            )
        )
        ratios = f.get("ratio_to_bare_get", {})
        get_label = f"bare GET ({f.get('reference_httpx_get', {}).get('event_loop', 'asyncio')})"
        per_poll = f["cpu_ms_per_poll_services"]
        out.append(
            _row(
                label,
                "CPU ms/poll, 4 services",
                _fmt(per_poll, 3) + (f" ({_fmt(ratios['services'], 2)} ×)" if ratios.get("services") else ""),
                f"{get_label} {_fmt(ref_ms, 3)} ms",
                "15.8" if interval == 10 else "",
                f"≤ {_fmt(1.5 * ref_ms, 3)}" if ref_ms else "≤ 1.5× GET",
                per_poll <= 1.5 * ref_ms if ref_ms else None,
            )
        )
        if "cpu_ms_per_poll_all_in" in f:
            all_in = f["cpu_ms_per_poll_all_in"]
            out.append(
                _row(
                    label,
                    "CPU ms/poll, all-in (4 services + NATS + database + S3)",
                    _fmt(all_in, 3) + (f" ({_fmt(ratios['all_in'], 2)} ×)" if ratios.get("all_in") else ""),
                    f"{get_label} {_fmt(ref_ms, 3)} ms",
                    "",
                    f"≤ {_fmt(1.5 * ref_ms, 3)}" if ref_ms else "≤ 1.5× GET",
                    all_in <= 1.5 * ref_ms if ref_ms else None,
                )
            )
            out.append(
                _row(
                    label,
                    "CPU ms per intended poll, 4 services / all-in",
                    f"{_fmt(f['cpu_ms_per_intended_poll_services'], 3)} / "
                    f"{_fmt(f['cpu_ms_per_intended_poll_all_in'], 3)}",
                    "",
                    "",
                    "",
                    None,
                )
            )
        out.append(
            _row(
                label,
                "CPU % 4 services (gw/orch/adapter/storage)" + _replicas_note(f),
                _split_cpu(f),
                "",
                "165" if interval == 10 else "",
                "",
                None,
            )
        )
        out.append(
            _row(
                label,
                "CPU % NATS / S3 / database / other people's processes",
                " / ".join(_fmt(f["cpu_percent"].get(s)) for s in ("nats", "s3", "database", "others")),
                "",
                "",
                "",
                None,
            )
        )
        out.append(
            _row(
                label,
                "RSS MB 4 services (max)",
                _fmt(f["rss_mb_services"], 0),
                "",
                "",
                "≤ 1,074 (1 GiB)",
                f["rss_mb_services"] <= 1024**3 / 1e6,
            )
        )
        if "rss_mb_all_in" in f:
            out.append(
                _row(
                    label,
                    "RSS MB all-in (max at one sample); CPU % all-in",
                    f"{_fmt(f['rss_mb_all_in'], 0)}; {_fmt(f['cpu_percent_all_in'])}",
                    "",
                    "",
                    "",
                    None,
                )
            )
        out.append(
            _row(
                label,
                "RSS MB NATS / S3 / database (max)",
                " / ".join(_fmt(f["rss_max_mb"][s], 0) for s in ("nats", "s3", "database")),
                "",
                "",
                "",
                None,
            )
        )
        late = f["lateness_s"]
        out.append(
            _row(
                label,
                "poll lateness p50 / p99 s",
                f"{_fmt(late.get('p50'), 2)} / {_fmt(late.get('p99'), 2)}",
                "",
                "",
                "p99 ≤ 1",
                late.get("p99", 99) <= 1.0,
            )
        )
        lag = f.get("completion_lag_s", {})
        if lag.get("count"):
            out.append(
                _row(
                    label,
                    "completion lag p50 / p99 s",
                    f"{_fmt(lag['p50'])} / {_fmt(lag['p99'])}",
                    "",
                    "84 (median)" if interval == 10 else "",
                    f"p99 ≤ {interval + 1:g}",
                    lag["p99"] <= interval + 1,
                )
            )
            seen, copied = f.get("finish_to_success_poll_s", {}), f.get("success_seen_to_completed_s", {})
            release_late = f.get("release", {}).get("lateness_s", {})
            if seen.get("count") and copied.get("count"):
                out.append(
                    _row(
                        label,
                        "  lag p99: finish→seen / seen→COMPLETED; poll lateness p99 meanwhile",
                        f"{_fmt(seen['p99'], 2)} / {_fmt(copied['p99'], 2)}; "
                        f"{_fmt(release_late.get('p99'), 2)}",
                        "",
                        "",
                        "",
                        None,
                    )
                )
            out.append(
                _row(
                    label,
                    "completed within one interval of finishing",
                    f"{f['within_interval']}/{f['completions_expected']}",
                    "",
                    "",
                    "all",
                    f["within_interval"] >= f["completions_expected"],
                )
            )
    out.extend(_callback_rows(results))
    out.extend(_queueing_rows(results))
    out.extend(_scale_rows(results))
    out.extend(_day_rows(results))
    g = results.get("ingest")
    if g and "error" not in g:
        ref = g.get("reference_upload", {})
        ref_rate = ref.get("mb_per_s")
        out.append(
            _row(
                "ingest",
                f"MB/s, {g['bytes'] / 1024**3:g} GiB result",
                _fmt(g["mb_per_s"]),
                f"direct MinIO upload {_fmt(ref_rate)}",
                "94 (direct 152)",
                # Issue #27 raised the target from 80 % (issue #8) to 95 % of the direct upload.
                f"≥ {_fmt(0.95 * ref_rate, 0)} (95 %)" if ref_rate else "≥ 95 % of direct",
                g["mb_per_s"] >= 0.95 * ref_rate if ref_rate else None,
            )
        )
        if "cpu_seconds_all_in" in g:
            out.append(
                _row(
                    "ingest",
                    "CPU s, 4 services / all-in (with NATS, database, S3)",
                    f"{_fmt(g['cpu_seconds_services'], 2)} / {_fmt(g['cpu_seconds_all_in'], 2)}",
                    "",
                    "",
                    "",
                    None,
                )
            )
        out.append(
            _row(
                "ingest",
                "storage peak RSS MB",
                _fmt(g["storage_peak_mb"], 0),
                f"direct upload {_fmt(ref.get('peak_rss_bytes', 0) / 1e6, 0)}",
                "2,100",
                "≤ 200",
                g["storage_peak_mb"] <= 200,
            )
        )
    a = results.get("api")
    if a and "error" not in a:
        for transport in ("http", "grpc"):
            x, ref = a[transport]["get_asset"], a[transport]["reference"]
            out.append(
                _row(
                    "api",
                    f"{transport} GetAsset p50 / p99 ms, req/s (c={a['concurrency']})",
                    f"{_fmt(x['p50_ms'], 1)} / {_fmt(x['p99_ms'], 1)}, {_fmt(x['requests_per_s'], 0)}/s",
                    f"{ref['what']} {_fmt(ref['p50_ms'], 1)} / {_fmt(ref['p99_ms'], 1)}, "
                    f"{_fmt(ref['requests_per_s'], 0)}/s",
                    "",
                    "as high as the design allows",
                    None,
                )
            )
            out.append(
                _row(
                    "api",
                    f"{transport} GetAsset CPU ms/request, services / all-in (client)",
                    f"{_fmt(x['cpu_ms_per_request_services'], 2)} / "
                    f"{_fmt(x.get('cpu_ms_per_request_all_in'), 2)} "
                    f"({_fmt(x['cpu_ms_per_request']['driver'], 2)})",
                    f"{ref['what']} {_fmt(ref['cpu_ms_per_request_services'], 2)} / "
                    f"{_fmt(ref.get('cpu_ms_per_request_all_in'), 2)} "
                    f"({_fmt(ref['cpu_ms_per_request']['driver'], 2)})",
                    "",
                    "",
                    None,
                )
            )
    return out


def _realistic_rows(t: dict[str, Any] | None) -> list[dict[str, str]]:
    """The realistic work's own rows: what was asked, the time added to the provider's, the check."""
    if not t or "error" in t or not t.get("work", {}).get("realistic"):
        return []
    work, out = t["work"], []
    sizes, seconds = work["result_bytes"], work["provider_seconds"]
    out.append(
        _row(
            "throughput",
            "realistic work: models, boxes, videos; provider s p50 / max; result MB p50 / max",
            f"{len(work['models'])}, {work['boxes']}, {work['videos']}; "
            f"{_fmt(seconds.get('p50'))} / {_fmt(seconds.get('max'))}; "
            f"{_fmt(sizes.get('p50', 0) / 1e6, 2)} / {_fmt(sizes.get('max', 0) / 1e6, 1)}",
            f"seed {work['seed']}",
            "",
            "",
            None,
        )
    )
    overhead = t.get("overhead_s", {})
    if overhead.get("count"):
        out.append(
            _row(
                "throughput",
                "time added to the provider's: accepted→COMPLETED − provider time, p50 / p99 s",
                f"{_fmt(overhead['p50'], 2)} / {_fmt(overhead['p99'], 2)}",
                f"poll interval {t.get('poll_interval_s', 0):g} s",
                "",
                "",
                None,
            )
        )
    stored = t.get("stored_objects")
    if stored:
        out.append(
            _row(
                "throughput",
                "stored objects whose size and SHA-256 match what the provider sent",
                f"{stored['matched']}/{t['generations']}",
                f"{_fmt(stored['bytes'] / 1e6, 0)} MB read back",
                "",
                "all",
                stored["matched"] >= t["generations"],
            )
        )
    return out


def _scale_rows(results: dict[str, Any]) -> list[dict[str, str]]:
    """The highest level held with every poll on time, its memory, and where polls fell behind."""
    c = results.get("scale")
    if not c or "error" in c or "highest_kept" not in c:
        return []
    label = f"scale ({c['interval_s']:g}s polls)"
    limits = c["limits"]
    steps = "; ".join(
        f"{level['in_flight']:,}: p99 {_fmt(level['lateness_s'].get('p99'), 2)} s, "
        f"{_fmt(level['rss_bytes_all_in'] / 1e6, 0)} MB"
        for level in c.get("levels", [])
    )
    memory = c.get("rss_mb_services_nats_database_at_highest")
    return [
        _row(
            label,
            "most generations held with poll lateness p99 ≤ 1 s",
            f"{c['highest_kept']:,}",
            f"fell behind at {c['fell_behind_at']:,}" if c.get("fell_behind_at") else "did not fall behind",
            "",
            "100,000",
            c["highest_kept"] >= 100_000,
        ),
        _row(
            label,
            "  RSS MB there: services + NATS + database / all-in (with S3)",
            f"{_fmt(memory, 0)} / {_fmt(c.get('rss_mb_all_in_at_highest'), 0)}",
            "",
            "",
            f"≤ {limits['memory_bytes_services_nats_database'] / 1e6:,.0f} (2 GiB)",
            memory <= limits["memory_bytes_services_nats_database"] / 1e6 if memory is not None else None,
        ),
        _row(label, "  levels: held: lateness p99, RSS all-in", steps, "", "", "", None),
    ]


def _day_rows(results: dict[str, Any]) -> list[dict[str, str]]:
    """The production day: end-to-end over the provider's own time, CPU and memory, kept up or not."""
    d = results.get("day")
    if not d or "error" in d or "end_to_end_s" not in d:
        return []
    label = f"day ({d['rate_per_s']:g}/s for {d['minutes']:g} min)"
    e2e, own, added = d["end_to_end_s"], d["provider_s"], d["added_s"]
    stored = d.get("stored_objects", {})
    return [
        _row(
            label,
            f"end to end p50 / p99 s ({d['completed']}/{d['generations']} done)",
            f"{_fmt(e2e.get('p50'))} / {_fmt(e2e.get('p99'))}",
            f"provider's own {_fmt(own.get('p50'))} / {_fmt(own.get('p99'))}",
            "",
            "",
            None,
        ),
        _row(
            label,
            "  time added per generation p50 / p99 s; submit lateness p99 s",
            f"{_fmt(added.get('p50'), 2)} / {_fmt(added.get('p99'), 2)}; "
            f"{_fmt(d['submit_lateness_s'].get('p99'), 2)}",
            f"poll interval {d['poll_interval_s']:g} s",
            "",
            f"p99 ≤ {2 * d['poll_interval_s']:g}",
            added.get("p99", 1e9) <= 2 * d["poll_interval_s"],
        ),
        _row(
            label,
            "CPU % services / all-in; CPU ms/generation all-in; RSS MB services / all-in",
            f"{_fmt(d['cpu_percent_services'])} / {_fmt(d['cpu_percent_all_in'])}; "
            f"{_fmt(d['cpu_ms_per_generation_all_in'])}; "
            f"{_fmt(d['rss_mb_services'], 0)} / {_fmt(d['rss_mb_all_in'], 0)}",
            "",
            "",
            "",
            None,
        ),
        _row(
            label,
            "stored objects matching what the provider sent; kept up",
            f"{stored.get('matched', 0)}/{d['generations']}; {'yes' if d['kept_up'] else 'no'}",
            "; ".join(d.get("fell_behind", [])),
            "",
            "all; yes",
            bool(d["kept_up"]) and stored.get("matched", 0) >= d["generations"],
        ),
    ]


def _callback_rows(results: dict[str, Any]) -> list[dict[str, str]]:
    """Completion lag with callbacks, next to polling's at the same interval when that ran too."""
    c = results.get("callbacks")
    if not c or "error" in c or not c["completion_lag_s"].get("count"):
        return []
    lag, interval = c["completion_lag_s"], c["interval_s"]
    polled = results.get(f"inflight-{interval:g}s", {}).get("completion_lag_s", {})
    polling = f"polling every {interval:g} s: {_fmt(polled['p50'])} / {_fmt(polled['p99'])}" if polled else ""
    sent, answered = c["callback_to_completed_s"], c["finish_to_callback_sent_s"]
    label = f"callbacks ({interval:g}s polls)"
    return [
        _row(
            label,
            f"completion lag p50 / p99 s ({c['completed']}/{c['completions_expected']} done)",
            f"{_fmt(lag['p50'], 2)} / {_fmt(lag['p99'], 2)}",
            polling,
            "",
            "p99 ≤ 1",
            lag["p99"] <= 1.0,
        ),
        _row(
            label,
            "  lag p99: finish→callback sent / callback→COMPLETED",
            f"{_fmt(answered.get('p99'), 2)} / {_fmt(sent.get('p99'), 2)}",
            "",
            "",
            "",
            None,
        ),
        _row(
            label,
            "callbacks answered 200 / sent; provider polls meanwhile (each callback causes one)",
            f"{c['callbacks_answered_200']} / {c['callbacks_sent']}; {c['polls_during_release']}",
            "",
            "",
            "all",
            c["callbacks_answered_200"] >= c["completions_expected"],
        ),
    ]


def _queueing_rows(results: dict[str, Any]) -> list[dict[str, str]]:
    """Generations through limited keys: completion time against the ideal, and the scheduler's CPU."""
    q = results.get("queueing")
    if not q or "error" in q or "ideal_seconds" not in q:
        return []
    label = f"queueing ({q['keys']} keys × {q['key_limit']}, {q['task_seconds']:g} s tasks)"
    peaks = q["provider_peak_by_key"]
    return [
        _row(
            label,
            f"completion s ({q['completed']}/{q['generations']} done)",
            _fmt(q["seconds"], 1),
            f"ideal {_fmt(q['ideal_seconds'], 0)} s (×{_fmt(q['ratio_to_ideal'], 2)})",
            "",
            "",
            None,
        ),
        _row(
            label,
            "CPU s: services / all-in (ms per generation, services)",
            f"{_fmt(q['cpu_s_services'], 1)} / {_fmt(q['cpu_s_all_in'], 1)} "
            f"({_fmt(q['cpu_ms_per_generation_services'], 1)})",
            "",
            "",
            "",
            None,
        ),
        _row(
            label,
            "provider peak per key / its 429s; longest queue",
            f"{max(peaks.values(), default=0)} / {q['provider_refused_429']}; {q['longest_queue']}",
            "",
            "",
            f"≤ {q['key_limit']} / 0",
            max(peaks.values(), default=0) <= q["key_limit"] and q["provider_refused_429"] == 0,
        ),
    ]


def view(results: dict[str, Any], statistic: str) -> dict[str, Any]:
    """Each benchmark's ``statistic`` (``min``, ``median``, ``max``) figures, keyed as :func:`rows` reads."""
    return {key: entry.get(statistic, {}) for key, entry in results.items()}


def table(results: dict[str, Any]) -> str:
    """The median, min and max of every figure as one Markdown table (what bench/README.md shows).

    The min and max columns are filled where a figure's rows have the same shape in all three
    views (a row that exists in only some runs shows its median alone).
    """
    medians, lows, highs = (rows(view(results, stat)) for stat in ("median", "min", "max"))
    same_shape = [r["figure"] for r in medians] == [r["figure"] for r in lows] == [r["figure"] for r in highs]
    headers = [
        "bench",
        "figure",
        "median",
        "min",
        "max",
        "reference (same run, median)",
        "seed",
        "target",
        "",
    ]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for index, row in enumerate(medians):
        low = lows[index]["value"] if same_shape else ""
        high = highs[index]["value"] if same_shape else ""
        cells = [row["bench"], row["figure"], row["value"], low, high, row["reference"], row["seed"]]
        lines.append("| " + " | ".join([*cells, row["target"], row["verdict"]]) + " |")
    return "\n".join(lines)


def header(info: dict[str, Any], results: dict[str, Any]) -> str:
    """Lines above the table: the commit, the host, versions, and how many runs each figure has."""
    git, host, versions = info["git"], info["host"], info["versions"]
    runs = ", ".join(f"{key} {len(entry['runs'])}" for key, entry in results.items())
    shown = (
        "python",
        "grpcio",
        "sqlalchemy",
        "asyncpg",
        "nats-py",
        "httpx",
        "uvloop",
        "nats-server",
        "seaweedfs",
    )
    return "\n".join(
        [
            f"commit {git['commit'][:12]}{' + uncommitted changes' if git['dirty'] else ''}: "
            + git["subject"],
            f"host {host['cores']} cores, {host['cpu_model'] or 'unknown CPU'}, "
            f"{host['memory_bytes'] / 1024**3:.1f} GiB, load average at start "
            + " / ".join(f"{x:.2f}" for x in host["loadavg"]),
            "versions "
            + ", ".join(f"{name} {versions.get(name) or '–'}" for name in shown)
            + (f", postgresql {versions['postgresql']}" if versions.get("postgresql") else ""),
            f"runs {runs}",
        ]
    )


def write(
    path: Path, results: dict[str, Any], options: dict[str, Any], started: float, info: dict[str, Any]
) -> None:
    """Writes the run (commit, host, versions, options, every run's figures, their spread, the table)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
        **info,
        "options": options,
        "results": results,
        "table": rows(view(results, "median")),
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document, indent=2, default=str))
    tmp.replace(path)
