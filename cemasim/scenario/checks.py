"""Checks beyond types and ranges: device classes, registries (methods, datasets, models,
profiles, corruptions, radios), files (traces, intervals, arrivals, checkpoints), channels, and the
sizes a run would allocate. Registries are imported lazily: torch is heavy."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from cemasim.errors import ConfigError
from cemasim.scenario.classes import DEFAULT_CLASS, OVERRIDABLE, class_sizes, class_view, deep_merge
from cemasim.scenario.keys import MAX_PIECES, MAX_SAMPLES, SCHEMA
from cemasim.schema import Section, resolve


def check(resolved: dict[str, Any], problems: list[str]) -> None:
    """Resolve the device classes over the top level, then every check below; append problems."""
    _resolve_classes(resolved, problems)
    problems += _semantic_problems(resolved)


def _resolve_classes(sc: dict[str, Any], problems: list[str]) -> None:
    """Merge each class's overrides over the top-level sections and validate them under the class's path."""
    classes = sc["fleet"]["classes"]
    if not isinstance(classes, list):
        return
    seen: set[str] = {DEFAULT_CLASS}
    for i, cls in enumerate(classes):
        path = f"fleet.classes[{i}]"
        if isinstance(cls.get("name"), str):
            if cls["name"] in seen:
                problems.append(f"{path}.name: '{cls['name']}' is taken (names are unique; '{DEFAULT_CLASS}' is "
                                "the devices in no class)")
            seen.add(cls["name"])
        if (cls.get("count") is None) == (cls.get("fraction") is None):
            problems.append(f"{path}: give exactly one of count or fraction")
        for key in OVERRIDABLE:
            if isinstance(cls[key], dict) and isinstance(sc[key], dict):
                section = SCHEMA.fields[key]
                assert isinstance(section, Section)
                cls[key] = resolve(section, deep_merge(sc[key], cls[key]), f"{path}.{key}", problems)
    devices = sc["fleet"]["devices"]
    sizes_ok = all(c.get(k) is None or (isinstance(c.get(k), (int, float)) and math.isfinite(c[k]))
                   for c in classes for k in ("count", "fraction"))  # bad values are already reported
    if isinstance(devices, int) and sizes_ok:
        taken = sum(class_sizes(classes, devices))
        if taken > devices:
            problems.append(f"fleet.classes: the classes take {taken} devices but fleet.devices is {devices}")


def _semantic_problems(sc: dict[str, Any]) -> list[str]:
    """Checks that need the registries (imported lazily: torch is heavy)."""
    from cemasim.data.datasets import DATASETS
    from cemasim.methods import METHODS

    problems = []

    def need(registry, name: Any, path: str) -> None:
        if isinstance(name, str) and name not in registry:  # wrong types are already reported
            problems.append(f"{path}: {registry.unknown(name)}")

    need(METHODS, sc["method"]["name"], "method.name")
    problems += _deployment_problems(sc["method"])
    problems += _params_problems(sc["method"])
    need(DATASETS, sc["data"]["dataset"], "data.dataset")
    name = sc["data"]["dataset"]
    dataset = DATASETS.get(name) if isinstance(name, str) and name in DATASETS else None
    root = sc["data"]["root"]
    if isinstance(root, str) and not Path(root).expanduser().is_dir():
        problems.append(f"data.root: no such folder: {root}")
    for which in ("edge", "foundation"):
        problems += _model_problems(sc["models"], which, dataset.channels if dataset else None)
    problems += profile_problems(sc["cloud"]["profile"], "cloud.profile")
    top = _device_problems(sc)
    problems += top
    classes = sc["fleet"]["classes"] if isinstance(sc["fleet"]["classes"], list) else []
    for i, cls in enumerate(classes):
        if not all(isinstance(cls.get(k), dict) for k in OVERRIDABLE):
            continue  # already reported by the schema
        # a class repeats the top level's problems only where it changed the value
        own = [p for p in _device_problems(class_view(sc, cls)) if p not in top and not p.startswith("fleet.profile")]
        if cls["profile"] is not None:
            own += profile_problems(cls["profile"], "profile")
        problems += [f"fleet.classes[{i}].{p}" for p in own]
    problems += _size_problems(sc, [sc] + [class_view(sc, c) for c in classes
                                            if all(isinstance(c.get(k), dict) for k in OVERRIDABLE)])
    sel = sc["selection"]
    numbers = all(isinstance(sel[k], (int, float)) and not isinstance(sel[k], bool) for k in ("e_min", "e_max"))
    if numbers and sel["e_min"] >= sel["e_max"]:
        problems.append(f"selection.e_min: must be below selection.e_max ({sel['e_max']}), got {sel['e_min']}")
    problems += _method_bound_problems(sc)
    problems += _codec_problems(sc)
    problems += _deyo_problems(sc)
    from cemasim.methods import METHODS

    gated = [n for n in METHODS.names() if METHODS.meta(n).get("gateable")]  # declared at registration
    from cemasim.methods.policies import SELECTION_POLICIES

    gates = isinstance(sel["policy"], str) and sel["policy"] in SELECTION_POLICIES \
        and SELECTION_POLICIES.get(sel["policy"]) is not None
    if gates and sc["method"]["name"] not in gated:
        problems.append(f"selection.policy: {sel['policy']} gates the uploads of {', '.join(gated)}; "
                        f"method.name is {sc['method']['name']}")
    return problems


def _params_problems(method: dict[str, Any]) -> list[str]:
    """method.params against what the method declares (METHODS.add(..., params=Section)), defaults filled."""
    from cemasim.methods import METHODS

    return _declared_problems(METHODS, method, "name", "params", "method")


def _capacity_problems(sc: dict[str, Any]) -> list[str]:
    """Each link's capacity model: the trace it reads, and the parameters it declares."""
    from cemasim.net.capacity_models import CAPACITY_MODELS

    problems = []
    for direction in ("uplink", "downlink"):
        link = sc[direction]
        name, trace = link["capacity"], link["trace"]
        if name == "trace" and not trace:
            problems.append(f"{direction}.trace: required when {direction}.capacity is trace")
        if name == "constant" and trace:
            problems.append(f"{direction}.capacity: constant ignores {direction}.trace ({trace}); set one of them")
        if name is None and link["capacity_params"]:
            problems.append(f"{direction}.capacity_params: {direction}.capacity is not set, so no model reads them")
        elif name is not None:
            problems += _declared_problems(CAPACITY_MODELS, link, "capacity", "capacity_params", direction)
    return problems


def _declared_problems(registry, section: dict[str, Any], name_key: str, params_key: str, path: str) -> list[str]:
    """`section[params_key]` against the Section that the entry named `section[name_key]` declared at
    registration (`registry.add(..., params=Section)`), resolved in place with its defaults."""
    name, given = section[name_key], section[params_key]
    if not isinstance(name, str) or name not in registry or not isinstance(given, dict):
        return []  # reported elsewhere
    declared = registry.meta(name).get("params")
    where = f"{path}.{params_key}"
    if declared is None:
        return [f"{where}: {name} declares no parameters, got {', '.join(map(str, given))}"] if given else []
    problems: list[str] = []
    section[params_key] = resolve(declared, given, where, problems)
    return problems


def _deployment_problems(method: dict[str, Any]) -> list[str]:
    """Fill a null method.deployment with the method's own default; refuse one it does not support."""
    from cemasim.methods.registry import default_deployment, deployments

    allowed = deployments(method["name"]) if isinstance(method["name"], str) else ()
    if not allowed:
        return []  # unknown method: reported by method.name
    if method["deployment"] is None:
        method["deployment"] = default_deployment(method["name"])
    elif method["deployment"] not in allowed:
        where = {"edge": "runs on the device only (forward passes; it uploads nothing)",
                 "cloud": "learns in the cloud only (the device runs forward passes)"}[allowed[0]]
        return [f"method.deployment: {method['name']} {where}, so '{method['deployment']}' is not one of its "
                f"deployments; allowed: {', '.join(allowed)} (or null for its default, {allowed[0]})"]
    return []


def _codec_problems(sc: dict[str, Any]) -> list[str]:
    """A refresh codec other than float32 needs a method whose cloud sends parameters; stats needs a state
    that carries BatchNorm statistics."""
    from cemasim.methods.registry import refresh_carries_stats, sends_parameters

    codec, method = sc["cloud"]["refresh_codec"], sc["method"]
    if codec == "float32" or not isinstance(method["name"], str) or not isinstance(codec, str):
        return []  # the default, or already reported
    if not sends_parameters(method["name"], method["deployment"]):
        return [f"cloud.refresh_codec: {codec} encodes the parameters the cloud sends a device, but "
                f"{method['name']} (deployment {method['deployment']}) is sent none; leave it float32"]
    if codec == "stats" and not refresh_carries_stats(method["name"], method["norm_mode"]):
        return [f"cloud.refresh_codec: stats sends the BatchNorm running statistics only, but the state of "
                f"{method['name']} with method.norm_mode {method['norm_mode']} carries none (cema, upload_all and "
                "random_upload carry them with method.norm_mode tbr or running)"]
    return []


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _method_bound_problems(sc: dict[str, Any]) -> list[str]:
    """Values that make a method meaningless: LAME's graph complete, a replay buffer that never reaches replay_min."""
    problems = []
    knn = sc["method"]["lame_knn"]
    if sc["method"]["name"] == "lame" and _integer(knn):
        views = [("arrivals", sc["arrivals"])] + [(f"fleet.classes[{i}].arrivals", c["arrivals"])
                                                  for i, c in enumerate(sc["fleet"]["classes"] or [])
                                                  if isinstance(c, dict) and isinstance(c.get("arrivals"), dict)]
        sizes: set[Any] = set()
        for path, arrivals in views:
            size = arrivals.get("batch_size")
            if _integer(size) and size > 1 and knn >= size - 1 and size not in sizes:
                sizes.add(size)  # a class that keeps the top level's batch size is not reported again
                problems.append(f"method.lame_knn: must be below {path}.batch_size - 1 = {size - 1}, got {knn} "
                                "(every sample of a batch would neighbour all the others, and one class would take "
                                "the whole batch)")
    cloud = sc["cloud"]
    low, capacity, replay_only = cloud["replay_min"], cloud["replay_capacity"], cloud["replay_only_batch"]
    if _integer(low) and _integer(capacity) and low > capacity:
        problems.append(f"cloud.replay_min: must be at most cloud.replay_capacity ({capacity}), got {low} (the "
                        "buffer never holds that many: replay would never start)")
    elif _integer(low) and low == capacity and _integer(replay_only) and replay_only > 0:
        problems.append(f"cloud.replay_min: must be below cloud.replay_capacity ({capacity}) while "
                        f"cloud.replay_only_batch is {replay_only}, got {low} (replay-only steps need more than "
                        "replay_min samples, which the buffer never holds; or set cloud.replay_only_batch: 0)")
    return problems


def _deyo_problems(sc: dict[str, Any]) -> list[str]:
    """DeYO's tile grid must fit the image (a null image_size is at least 28 px, above deyo_patches' bound)."""
    patches, size = sc["method"]["deyo_patches"], sc["data"]["image_size"]
    ok = all(isinstance(v, int) and not isinstance(v, bool) for v in (patches, size))
    if sc["method"]["name"] == "deyo" and ok and patches > size:
        return [f"method.deyo_patches: must be at most data.image_size ({size}) tiles per side, got {patches}"]
    return []


def _number(value: Any) -> float | None:
    """A usable number (already type-checked values only; anything else was reported)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    return float(value) if ok else None


def _size_problems(sc: dict[str, Any], views: list[dict[str, Any]]) -> list[str]:
    """What a run would allocate, bounded before it runs (the bounds are MAX_* in keys.py)."""
    problems: list[str] = []
    duration, drain = _number(sc["duration_s"]), _number(sc["drain_s"]) or 0.0
    devices = _number(sc["fleet"]["devices"])
    if duration is None:
        return problems
    horizon = duration + drain
    rates = [_number(v["arrivals"]["rate_hz"]) for v in views if v["arrivals"]["process"] != "trace"]
    rate = max((r for r in rates if r is not None), default=None)
    if rate is not None and devices is not None and devices * rate * duration > MAX_SAMPLES:
        problems.append(f"arrivals.rate_hz: fleet.devices x arrivals.rate_hz x duration_s = {devices:g} x {rate:g} x "
                        f"{duration:g} plans {devices * rate * duration:.3g} samples; at most {MAX_SAMPLES:.0e} "
                        "per run")
    bin_s = _number(sc["output"]["timeline_bin_s"])
    if bin_s is not None and horizon / bin_s > MAX_PIECES:
        problems.append(f"output.timeline_bin_s: (duration_s + drain_s) / timeline_bin_s = {horizon / bin_s:.3g} "
                        f"bins per device; at most {MAX_PIECES:.0e} (use wider bins)")
    seen = set()
    for view in views:
        for problem in _pieces_problems(view, duration, horizon):
            if problem not in seen:
                seen.add(problem)
                problems.append(problem)
    return problems


def _pieces_problems(sc: dict[str, Any], duration: float, horizon: float) -> list[str]:
    """Per-device schedules (segments, outage and on/off periods) that would hold too many pieces."""
    out = []

    def bound(path: str, what: str, mean_s: float | None, span: float) -> None:
        if mean_s is not None and span / mean_s > MAX_PIECES:
            out.append(f"{path}: {what} over {span:g} s means {span / mean_s:.3g} periods per device; at most "
                       f"{MAX_PIECES:.0e}")

    segments = sc["shift"]["segments"]
    if isinstance(segments, list) and segments and sc["shift"]["loop"] is True:
        lengths = [_number(g.get("duration_s")) for g in segments if isinstance(g, dict)]
        known = [x for x in lengths if x is not None]
        if known and len(known) == len(lengths):
            bound("shift.segments", "the shortest segment", min(known), horizon)
    for key in ("uplink", "downlink"):
        outages = sc[key]["outages"]
        if outages["process"] == "exponential":
            up, down = _number(outages["up_s"]), _number(outages["down_s"])
            bound(f"{key}.outages", "up_s + down_s", up + down if up and down else None, horizon)
    avail = sc["availability"]
    if avail["process"] == "onoff":
        on, off = _number(avail["on_s"]), _number(avail["off_s"])
        bound("availability", "on_s + off_s", on + off if on and off else None, horizon)
    arrivals = sc["arrivals"]
    if arrivals["process"] == "onoff":
        on, off = _number(arrivals["on_s"]), _number(arrivals["off_s"])
        bound("arrivals", "on_s + off_s", on + off if on and off else None, duration)
    return out


def _model_problems(models: dict[str, Any], which: str, channels: int | None) -> list[str]:
    """A model name the registries do not know, a checkpoint that cannot load, or input channels
    that differ from the dataset's; cheap checks only (no external weights are read)."""
    from cemasim.errors import DataError
    from cemasim.models.external import input_shape_of, is_external
    from cemasim.models.resolve import check_checkpoint
    from cemasim.models.zoo import MODELS

    name, weights = models[which], models[f"{which}_weights"]
    if not isinstance(name, str):
        return []
    if is_external(name):
        try:
            shape = input_shape_of(name)
        except ConfigError as exc:
            return [f"models.{which}: {p}" for p in exc.problems]
    elif name in MODELS:
        shape = MODELS.get(name).input_shape
    else:
        return [f"models.{which}: {MODELS.unknown(name)} (or timm:ARCH / torchvision:ARCH)"]
    problems = []
    if channels is not None and shape[0] != channels:
        problems.append(f"models.{which}: {name} takes {shape[0]}-channel images but the dataset has {channels} "
                        f"channel{'s' if channels != 1 else ''}")
    if isinstance(weights, str) and weights != "random":
        path = Path(weights).expanduser()
        if not path.is_file():
            problems.append(f"models.{which}_weights: no such checkpoint file: {weights}")
        elif not is_external(name):
            try:
                check_checkpoint(name, path)
            except DataError as exc:
                problems.append(f"models.{which}_weights: {exc}")
    return problems


def _file_problems(sc: dict[str, Any]) -> list[str]:
    """Trace and interval files: present, and parsed now (cached), so a bad row is reported before the run."""
    from cemasim.data.arrivals import read_arrival_file
    from cemasim.errors import DataError
    from cemasim.net.intervals import cached_interval_file

    problems = []
    uses = {"uplink.trace": True, "downlink.trace": True,
            "uplink.outages.trace": sc["uplink"]["outages"]["process"] == "trace",
            "downlink.outages.trace": sc["downlink"]["outages"]["process"] == "trace",
            "availability.trace": sc["availability"]["process"] == "trace",
            "arrivals.trace": sc["arrivals"]["process"] == "trace"}
    for key, used in uses.items():
        node: Any = sc
        for step in key.split("."):
            node = node[step]
        if not isinstance(node, str):
            continue
        if not Path(node).is_file():
            problems.append(f"{key}: no such file: {node}")
            continue
        if not used:
            continue
        try:
            if key in ("uplink.trace", "downlink.trace"):
                link = sc[key.split(".")[0]]
                _check_trace(node, link["trace_format"], link["trace_bin_ms"])
            elif key == "arrivals.trace":
                read_arrival_file(node)
            else:
                cached_interval_file(node)
        except DataError as exc:
            problems.append(f"{key}: {exc}")
    return problems


def _check_trace(path: str, fmt: Any, bin_ms: Any) -> None:
    from cemasim.net.traces import cached_trace

    if isinstance(fmt, str) and _number(bin_ms) is not None:
        cached_trace(path, fmt, float(bin_ms))


def _device_problems(sc: dict[str, Any]) -> list[str]:
    """What a device sees (arrivals, shift, links, availability, energy, profile), paths relative to the
    scenario or class."""
    from cemasim.data.corruptions import CORRUPTIONS
    from cemasim.net.radio import RADIOS

    problems = []
    if sc["arrivals"]["process"] == "trace" and not sc["arrivals"]["trace"]:
        problems.append("arrivals.trace: required when arrivals.process is trace")
    problems += profile_problems(sc["fleet"]["profile"], "fleet.profile")
    problems += _edge_training_problems(sc)
    segments = sc["shift"]["segments"]
    if isinstance(segments, list):
        for i, seg in enumerate(segments):
            corruption = seg.get("corruption") if isinstance(seg, dict) else None
            if isinstance(corruption, str) and corruption != "clean" and corruption not in CORRUPTIONS:
                problems.append(f"shift.segments[{i}].corruption: {CORRUPTIONS.unknown(corruption)}")
        if not segments:
            problems.append("shift.segments: needs at least one segment")
    for key, needs in (("uplink.outages", "trace"), ("downlink.outages", "trace"), ("availability", "trace")):
        section = sc[key.split(".")[0]] if "." not in key else sc[key.split(".")[0]][key.split(".")[1]]
        if section["process"] == needs and not section["trace"]:
            problems.append(f"{key}.trace: required when {key}.process is trace")
    problems += _file_problems(sc)
    problems += _capacity_problems(sc)
    radio = sc["energy"]["radio"]
    if isinstance(radio, str) and radio not in RADIOS:
        problems.append(f"energy.radio: {RADIOS.unknown(radio)}")
    return problems


def profile_problems(spec: Any, path: str) -> list[str]:
    """A profile name, a profile file or an inline mapping that cannot be used."""
    from cemasim.models.profiles import PROFILES, is_profile_file, load_profile_file

    if isinstance(spec, str) and is_profile_file(spec):
        try:
            load_profile_file(spec)
        except ConfigError as exc:
            return [f"{path}: {exc.source}: {p}" for p in exc.problems]
    elif isinstance(spec, str) and spec not in PROFILES:
        return [f"{path}: {PROFILES.unknown(spec)} (or a profile file written by `cemasim profile`)"]
    elif isinstance(spec, dict) and spec.get("peak_flops_per_s") is None:
        return [f"{path}.peak_flops_per_s: required in an inline profile"]
    return []


def _can_train(spec: Any) -> bool | None:
    from cemasim.models.profiles import profile_from

    try:
        return profile_from(spec).can_train if isinstance(spec, str) else bool(spec.get("can_train"))
    except Exception:  # unknown or broken profiles are reported by profile_problems
        return None


def _edge_training_problems(sc: dict[str, Any]) -> list[str]:
    """A method that back-propagates on the device needs a profile that can train."""
    from cemasim.methods import ADAPTERS

    method = sc["method"]
    if method["name"] not in ADAPTERS or method["deployment"] != "edge":
        return []
    profile = sc["fleet"]["profile"]
    can_train = _can_train(profile)
    label = f"'{profile}'" if isinstance(profile, str) else "the inline profile"
    if can_train is None or can_train:
        return []
    return [f"method.deployment: {method['name']} on the edge needs a device profile that can train, and "
            f"fleet.profile {label} cannot (use e.g. jetson-nano, or method.deployment: cloud)"]
