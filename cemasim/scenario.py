"""Scenario: the validated, fully-defaulted description of one simulation run.

YAML file -> `--set` overrides -> schema validation (every problem, each with its YAML path) ->
registry checks (methods, models, profiles, corruptions) -> `Scenario` with attribute access.
Units live in key names (_s, _ms, _mbps, _hz, _bytes). docs/scenario.md is generated from SCHEMA.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import yaml

from cemasim.classes import DEFAULT_CLASS, OVERRIDABLE, class_sizes, class_view, deep_merge
from cemasim.errors import ConfigError
from cemasim.schema import (
    Field,
    Section,
    at_most,
    between,
    defaults,
    non_negative,
    one_of,
    plain_name,
    positive,
    resolve,
    show,
)

F = Field

# Bounds on what sizes memory or work, named in the messages: a typo (1e12 for 1e2) must be an error
# at validation, not a 37 GiB allocation or a run that never ends.
MAX_DEVICES = 10**6
MAX_SAMPLES = 10**8  # samples planned per run (devices x rate_hz x duration_s)
MAX_PIECES = 10**7  # timeline bins, shift segments, outage/on-off periods per device

PROFILE = Section(
    "A device or cloud-GPU profile given inline instead of by name (see `cemasim list profiles`).",
    {
        "peak_flops_per_s": F((float,), None, "peak FP32 throughput of the hardware", "FLOP/s", (positive,)),
        "utilization": F((float,), 0.3, "fraction of peak that model kernels reach", "", (between(1e-6, 1),)),
        "overhead_s": F((float,), 0.0, "fixed cost per model call (launch, framework)", "s", (non_negative,)),
        "can_train": F((bool,), False, "whether the device may run backward passes"),
        "active_w": F((float,), 0.0, "power drawn while computing (energy accounting)", "W", (non_negative,)),
    },
)

SEGMENT = Section(
    "One stretch of a device's shift schedule.",
    {
        "corruption": F((str,), "gaussian_noise", "corruption name (`cemasim list corruptions`) or `clean`"),
        "severity": F((int,), 3, "corruption severity", "", (between(1, 5),)),
        "duration_s": F((float,), 60.0, "simulated time this segment lasts", "s", (positive,)),
    },
)

DEFAULT_SEGMENTS = [
    {"corruption": "gaussian_noise", "severity": 3, "duration_s": 60.0},
    {"corruption": "defocus_blur", "severity": 3, "duration_s": 60.0},
    {"corruption": "contrast", "severity": 3, "duration_s": 60.0},
]

LOSS = Section(
    "Per-transfer loss: each attempt to send a message is lost or not; a lost attempt is sent again "
    "after a timeout, up to max_retries times, then the message is dropped (cause loss).",
    {
        "model": F((str,), "none", "none, bernoulli (every attempt lost with probability rate) or gilbert_elliott "
                   "(bursty: a good/bad Markov chain advanced per attempt)", "",
                   (one_of("none", "bernoulli", "gilbert_elliott"),)),
        "rate": F((float,), 0.0, "bernoulli: loss probability per attempt", "", (between(0, 1),)),
        "p_good_to_bad": F((float,), 0.01, "gilbert_elliott: good -> bad transition probability per attempt", "",
                           (between(0, 1),)),
        "p_bad_to_good": F((float,), 0.3, "gilbert_elliott: bad -> good transition probability per attempt", "",
                           (between(0, 1),)),
        "loss_good": F((float,), 0.0, "gilbert_elliott: loss probability in the good state", "", (between(0, 1),)),
        "loss_bad": F((float,), 0.5, "gilbert_elliott: loss probability in the bad state", "", (between(0, 1),)),
        "max_retries": F((int,), 5, "retransmissions before the message is dropped (every message: uploads, "
                         "reports, refreshes; the link idles during each timeout)", "", (non_negative,)),
        "retry_timeout_ms": F((float,), None, "wait after a lost attempt before resending; null = one round trip "
                              "(2 x latency_ms) + 200 ms (Linux's minimum TCP RTO)", "ms", (non_negative,),
                              nullable=True),
    },
)

OUTAGES = Section(
    "Link outages: intervals with zero capacity.",
    {
        "process": F((str,), "none", "none; exponential (alternating up/down periods with exponential lengths); "
                     "trace (a CSV of down intervals: start_s,end_s[,device])", "",
                     (one_of("none", "exponential", "trace"),)),
        "up_s": F((float,), 300.0, "exponential: mean time between outages", "s", (positive,)),
        "down_s": F((float,), 20.0, "exponential: mean outage length", "s", (positive,)),
        "trace": F((str,), None, "trace: path of the down-interval CSV (rows without device apply to every "
                   "device)", nullable=True),
        "in_flight": F((str,), "resume", "a transfer on the wire when an outage starts: resume (pauses, then "
                       "continues) or lost (dropped, cause link_outage)", "", (one_of("resume", "lost"),)),
    },
)


def link_section(direction: str, default_mbps: float) -> Section:
    """uplink and downlink: the same keys, different default rates."""
    return Section(f"Per-device link from {direction}: its own capacity (constant or a trace), optional shared "
                   "segment behind it, loss, outages; FIFO, one message on the wire at a time.", {
        "bandwidth_mbps": F((float,), default_mbps, "own link rate; null = infinite (ignored when trace is set)",
                            "Mbit/s", (positive,), nullable=True),
        "latency_ms": F((float,), 20.0, "one-way propagation latency (a CSV trace's latency_ms column overrides "
                        "it)", "ms", (non_negative,)),
        "trace": F((str,), None, "bandwidth trace file: CSV with time_s,mbps[,latency_ms] or a Mahimahi packet "
                   "delivery trace (one ms timestamp per 1500-byte opportunity); null = constant bandwidth_mbps",
                   nullable=True),
        "trace_format": F((str,), "auto", "auto (by suffix and content), csv or mahimahi", "",
                          (one_of("auto", "csv", "mahimahi"),)),
        "trace_end": F((str,), "loop", "after the trace's last piece: loop, hold (keep the last rate) or stop "
                       "(zero capacity)", "", (one_of("loop", "hold", "stop"),)),
        "trace_phase": F((str,), "random", "random: each device starts at a random point of the trace (devices "
                         "are not synchronised); zero: every device starts at its beginning", "",
                         (one_of("random", "zero"),)),
        "trace_bin_ms": F((float,), 100.0, "Mahimahi: delivery opportunities are counted in bins this wide",
                          "ms", (positive,)),
        "shared_mbps": F((float,), None, "capacity of a shared segment (access point, cell) behind the devices' "
                         "own links, shared max-min fairly; null = none", "Mbit/s", (positive,), nullable=True),
        "group_size": F((int,), None, "devices per shared segment (consecutive devices of a class); null = the "
                        "whole class shares one", "", (positive,), nullable=True),
        "loss": LOSS,
        "outages": OUTAGES,
    })


AVAILABILITY = Section(
    "Device availability: an off device neither predicts (samples arriving then are missed) nor sends or "
    "receives.",
    {
        "process": F((str,), "always", "always; onoff (alternating on/off periods with exponential lengths); trace "
                     "(a CSV of off intervals: start_s,end_s[,device])", "",
                     (one_of("always", "onoff", "trace"),)),
        "on_s": F((float,), 600.0, "onoff: mean on period", "s", (positive,)),
        "off_s": F((float,), 60.0, "onoff: mean off period", "s", (positive,)),
        "trace": F((str,), None, "trace: path of the off-interval CSV", nullable=True),
        "in_flight": F((str,), "resume", "uploads and refreshes on the wire or arriving when the device turns "
                       "off: resume when it is back, or lost (cause device_off)", "", (one_of("resume", "lost"),)),
    },
)

ENERGY = Section(
    "Device energy: radio bits and compute (only what the workload causes; idle and base power are not "
    "counted).",
    {
        "radio": F((str,), "wifi", "radio preset for the per-bit energy (`cemasim list radios`)"),
        "tx_nj_per_bit": F((float,), None, "transmit energy per bit; null = the radio preset's", "nJ/bit",
                           (non_negative,), nullable=True),
        "rx_nj_per_bit": F((float,), None, "receive energy per bit; null = the radio preset's", "nJ/bit",
                           (non_negative,), nullable=True),
        "compute_w": F((float,), None, "power while the device computes; null = its profile's active_w", "W",
                       (non_negative,), nullable=True),
        "compute_nj_per_flop": F((float,), None, "energy per FLOP instead of compute_w x busy time; null = use "
                                 "compute_w", "nJ/FLOP", (non_negative,), nullable=True),
    },
)

DEVICE_CLASS = Section(
    "A device class: its share of the fleet and what differs from the top-level settings. Each override is "
    "a partial mapping of the top-level section of that name, merged over it.",
    {
        "name": F((str,), None, "class label (results carry it as device_class)"),
        "count": F((int,), None, "devices in this class", "", (non_negative,), nullable=True),
        "fraction": F((float,), None, "share of fleet.devices in this class (largest-remainder rounding)", "",
                      (between(0, 1),), nullable=True),
        "profile": F((str,), None, "compute profile of the class; null = fleet.profile", alt=PROFILE, nullable=True),
        **{key: F((dict,), {}, f"overrides of the top-level `{key}` keys") for key in OVERRIDABLE},
    },
)

SCHEMA = Section(
    "A cemasim scenario. Every key is optional; omitted keys take the defaults below.",
    {
        "name": F((str,), "scenario", "label used in output folder names and tables", "", (plain_name,)),
        "seed": F((int,), 0, "master seed; every random stream derives from it", "",
                  (non_negative, at_most(2**63 - 1, "a 64-bit seed"))),
        "duration_s": F((float,), 180.0, "simulated time during which samples arrive", "s", (positive,)),
        "drain_s": F((float,), 120.0, "extra simulated time to finish work in flight after arrivals stop", "s",
                     (non_negative,)),
        "compute_device": F((str,), "auto", "torch device for the real ML work: auto, cpu or cuda",
                            "", (one_of("auto", "cpu", "cuda"),)),
        "data": Section("Where the images come from (`cemasim list datasets`).", {
            "dataset": F((str,), "fashion_mnist", "dataset name; the embedded fashion_mnist needs no download"),
            "root": F((str,), None, "folder with the dataset files; null = the copy embedded in the package",
                      nullable=True),
            "split": F((str,), "test", "dataset split (train or test where the format has both)", "",
                       (one_of("train", "test"),)),
            "subset": F((int,), None, "images per domain (pre-corrupted data) or in total; null = all",
                        "images", (positive,), nullable=True),
            "image_size": F((int,), None, "ImageNet-style crop size; null = the format's default (224)", "px",
                            (positive, at_most(4096, "pixels per side")), nullable=True),
            "mask_outputs": F((bool,), True, "ImageNet-R: keep only the logits of its 200 classes"),
        }),
        "models": Section("Models: zoo names (`cemasim list models`) or timm:ARCH / torchvision:ARCH.", {
            "edge": F((str,), "fmnist_edge_cnn", "edge model g_w run on every device"),
            "foundation": F((str,), "fmnist_foundation_cnn", "foundation model f_theta run in the cloud"),
            "edge_weights": F((str,), None, "null = shipped zoo weights or the library's local cache; "
                              "random = random init (explicit); else a checkpoint path", nullable=True),
            "foundation_weights": F((str,), None, "as edge_weights, for the foundation model", nullable=True),
        }),
        "fleet": Section("The edge devices.", {
            "devices": F((int,), 8, "number of edge devices", "", (positive, at_most(MAX_DEVICES, "devices per run"))),
            "profile": F((str,), "rpi4", "edge compute profile name (`cemasim list profiles`) or an inline mapping",
                         alt=PROFILE),
            "classes": F((list,), [], "heterogeneous fleet: device classes by count or fraction; devices in no "
                         "class use the top-level settings (class default)", items=DEVICE_CLASS),
            "batch_across_devices": F((bool,), False, "host speed-up: merge edge forward passes of devices "
                                      "predicting at the same simulated instant into one call (same results)"),
        }),
        "arrivals": Section("Per-device sample arrivals, grouped into test batches.", {
            "process": F((str,), "poisson", "constant, poisson, onoff (Poisson bursts) or trace (a file)", "",
                         (one_of("constant", "poisson", "onoff", "trace"),)),
            "rate_hz": F((float,), 8.0, "mean samples per second per device (during on periods)", "1/s",
                         (positive,)),
            "aligned": F((bool,), False, "constant: every device starts at t = 0 (synchronised cameras) "
                         "instead of a random phase"),
            "on_s": F((float,), 30.0, "onoff: mean length of an on period (exponential)", "s", (positive,)),
            "off_s": F((float,), 30.0, "onoff: mean length of an off period (exponential)", "s", (positive,)),
            "trace": F((str,), None, "trace: CSV of arrival times, column time_s (all devices) or columns "
                       "device,time_s", nullable=True),
            "batch_size": F((int,), 64, "samples per test batch", "", (positive,)),
            "max_wait_s": F((float,), 30.0, "a partial batch is closed this long after its first sample", "s",
                            (positive,)),
        }),
        "shift": Section("Distribution shift seen by each device: a sequence of segments and a protocol.", {
            "protocol": F((str,), "continual", "continual: models keep adapting across segments; reset: device and "
                          "its cloud state return to the source at each segment; gradual: each segment's severity "
                          "goes 1-2-3-4-5-4-3-2-1; mixed: every sample from a random segment", "",
                          (one_of("continual", "reset", "gradual", "mixed"),)),
            "order": F((str,), "same", "same: every device follows the list; shuffled: per-device random order; "
                       "disjoint: device d sees only segment d mod S; random: segments drawn with replacement",
                       "", (one_of("same", "shuffled", "disjoint", "random"),)),
            "loop": F((bool,), True, "repeat the segment list when the run outlasts it"),
            "label_shift": F((str,), "none", "none: uniform over the data; dirichlet: per-device class mix "
                             "~ Dir(dirichlet_alpha); sorted: class-sorted (correlated) streams", "",
                             (one_of("none", "dirichlet", "sorted"),)),
            "dirichlet_alpha": F((float,), 0.1, "concentration of the Dirichlet label shift", "", (positive,)),
            "segments": F((list,), DEFAULT_SEGMENTS, "list of {corruption, severity, duration_s}", items=SEGMENT),
        }),
        "method": Section("The adaptation method (`cemasim list methods`).", {
            "name": F((str,), "cema", "method name"),
            "norm_mode": F((str,), "batch", "CEMA's BN statistics. batch: test-batch statistics in the edge, "
                           "student and foundation, only affine params travel (released is_tbr: false); tbr: "
                           "test-time batch renormalisation in all three, statistics set by the first batch each "
                           "model sees and sent with every refresh (released is_tbr: true); running: cemasim's "
                           "own, the edge predicts with running statistics from the source that the student's "
                           "train-mode distillation updates", "", (one_of("batch", "running", "tbr"),)),
            "bn_prior": F((float,), 0.0, "bn_adapt only: weight of the source statistics mixed with the "
                          "test-batch statistics (unbiased variance; the authors' BNAdaptation momentum is "
                          "1 - bn_prior)", "", (between(0, 1),)),
            "deployment": F((str,), "cloud", "tent/pl/eta/eata/sar/cotta: edge = adapt on the device (its profile must "
                            "allow training); cloud = upload samples, the cloud adapts the device's copy",
                            "", (one_of("edge", "cloud"),)),
            "lr": F((float,), None, "learning rate of tent/pl/eta/eata/sar/cotta; null = the preset's value for "
                    "the method (method.preset)", "", (positive,), nullable=True),
            "preset": F((str,), "auto", "learning-rate preset of every method and of CEMA's cloud where the "
                        "scenario leaves them null: imagenet (the authors' values), fmnist_zoo (chosen on the "
                        "validation corruptions for the shipped zoo, analysis/hparams/), auto (fmnist_zoo for "
                        "zoo models, imagenet for timm:/torchvision: ones, per model)", "",
                        (one_of("auto", "imagenet", "fmnist_zoo"),)),
            "e_margin": F((float,), 0.4, "eta/eata/sar reliability bound E < e_margin", "x ln C", (positive,)),
            "d_margin": F((float,), 0.4, "eta/eata redundancy margin |cos| < d_margin (0.05 is EATA's ImageNet "
                          "value; with 10 classes it removes almost every sample)", "", (between(0, 1),)),
            "fisher_alpha": F((float,), 2000.0, "eata: weight of the Fisher regulariser", "", (non_negative,)),
            "fisher_samples": F((int,), 2000, "eata: clean samples for the Fisher information", "samples",
                                (positive, at_most(10**6, "clean samples held in memory"))),
            "sar_rho": F((float,), 0.05, "sar: sharpness neighbourhood radius", "", (positive,)),
            "sar_reset": F((float,), 0.2, "sar: reset when the EMA of the loss falls below this", "",
                           (non_negative,)),
            "lame_knn": F((int,), 5, "lame: neighbours of the affinity graph", "", (positive,)),
            "cotta_anchor": F((float,), None, "cotta: augment the teacher when the source's mean confidence is "
                              "below this; null = CoTTA's own value for the class count: 0.92 up to 10 classes "
                              "(CIFAR-10), 0.72 up to 100 (CIFAR-100), 0.1 above (ImageNet)", "",
                              (between(0, 1),), nullable=True),
            "cotta_views": F((int,), 32, "cotta: augmented views averaged by the teacher", "",
                             (non_negative, at_most(1024, "views x batch images are held at once"))),
            "cotta_restore": F((float,), 0.001, "cotta: probability that a weight is restored to the source "
                               "each step", "", (between(0, 1),)),
            "answer_bytes": F((int,), 8, "cloud_inference: downlink bytes per answered sample", "bytes",
                              (positive,)),
        }),
        "selection": Section("CEMA's edge-side sample selection (thresholds are fractions of ln C).", {
            "e_max": F((float,), 0.4, "initial/static upper entropy bound (S_high); the cloud's loss weighting "
                       "has its own key, cloud.e0", "x ln C", (positive,)),
            "e_min": F((float,), 0.02, "fixed lower entropy bound (S_low); null disables it", "x ln C",
                       (non_negative,), nullable=True),
            "dynamic_e_max": F((bool,), True, "scale E_max by running mean entropy / its warm-up value"),
            "lambda": F((float,), 1.0, "lambda of the dynamic E_max", "", (positive,)),
            "warm_up_n": F((int,), 512, "samples seen before the dynamic E_max starts", "samples", (non_negative,)),
            "redundancy_filter": F((bool,), False, "EATA's redundancy filter |cos(m, p)| < redundancy_eps"),
            "redundancy_eps": F((float,), 0.05, "redundancy filter margin", "", (between(0, 1),)),
            "random_rate": F((float,), 0.5, "random_upload: probability that a sample is uploaded (match it "
                             "to cema's upload_ratio)", "", (between(0, 1),)),
        }),
        "upload": Section("How selected samples are encoded and queued on the device.", {
            "encoding": F((str,), "png", "payload encoder: raw (uint8 pixels), png or jpeg", "",
                          (one_of("raw", "png", "jpeg"),)),
            "jpeg_quality": F((int,), 90, "JPEG quality when encoding is jpeg", "", (between(1, 100),)),
            "queue_capacity": F((int,), 1024, "uploads waiting per device before drops; null = unbounded",
                                "samples", (positive,), nullable=True),
            "drop_policy": F((str,), "tail", "when the queue is full: tail drops the new sample, head the oldest",
                             "", (one_of("tail", "head"),)),
            "budget_bytes": F((int,), None, "per-device upload budget per window; null = none", "bytes",
                              (positive,), nullable=True),
            "budget_window_s": F((float,), 60.0, "length of the upload budget window", "s", (positive,)),
        }),
        "uplink": link_section("device to cloud", 10.0),
        "downlink": link_section("cloud to device", 50.0),
        "availability": AVAILABILITY,
        "energy": ENERGY,
        "cloud": Section("The cloud: foundation adaptation, replay buffer and distillation (CEMA defaults).", {
            "gpus": F((int,), 1, "cloud accelerators", "", (positive, at_most(4096, "GPUs"))),
            "scheduler": F((str,), "fifo", "which waiting GPU job runs next: fifo (by GPU request: a device's "
                           "worker requests its next job when the previous ends), round_robin (cycle over devices), "
                           "staleness (the device whose parameters are oldest; fifo without refreshes) or backlog "
                           "(the device with most uploads waiting: inbox, unfilled chunk, queued job)", "",
                           (one_of("fifo", "round_robin", "staleness", "backlog"),)),
            "ingress_mbps": F((float,), None, "cloud ingress capacity shared by every uplink transfer; null = "
                              "unlimited", "Mbit/s", (positive,), nullable=True),
            "egress_mbps": F((float,), None, "cloud egress capacity shared by every downlink transfer; null = "
                             "unlimited", "Mbit/s", (positive,), nullable=True),
            "profile": F((str,), "t4", "cloud accelerator profile name or inline mapping", alt=PROFILE),
            "chunk_size": F((int,), 32, "uploaded samples per foundation + distillation step", "samples",
                            (positive,)),
            "replay_capacity": F((int,), 10000, "FIFO replay buffer capacity", "samples", (positive,)),
            "replay_min": F((int,), 256, "replay starts once the buffer holds this many", "samples",
                            (non_negative,)),
            "replay_batch": F((int,), 96, "replayed samples added to each distillation chunk", "samples",
                              (non_negative,)),
            "replay_only_batch": F((int,), 128, "samples of the replay-only step after a batch without a "
                                   "full chunk; 0 disables it", "samples", (non_negative,)),
            "foundation_scope": F((str,), "shared", "shared: one foundation model adapts on every device's "
                                  "uploads; device: each device has its own foundation norm state", "",
                                  (one_of("shared", "device"),)),
            "replay_scope": F((str,), "device", "device: one replay buffer per device; shared: one for all",
                              "", (one_of("device", "shared"),)),
            "foundation_lr": F((float,), None, "SGD lr of the foundation entropy step; null = the preset's "
                               "(imagenet 2.5e-4; method.preset)", "", (positive,), nullable=True),
            "distill_lr": F((float,), None, "SGD lr of the distillation step; null = the preset's (imagenet "
                            "2.5e-3; method.preset)", "", (positive,), nullable=True),
            "momentum": F((float,), 0.9, "SGD momentum of both steps", "", (between(0, 1),)),
            "e0": F((float,), 0.4, "E0 of the cloud's sample weights exp(E0 - E) in the foundation step and the "
                    "distillation, for every method on CEMA's cloud (the authors' 0.4 ln C; independent of "
                    "selection.e_max, which only selects)", "x ln C", (positive,)),
            "alpha": F((float,), 3.0, "weight of the student entropy term", "", (non_negative,)),
            "beta": F((float,), 3.0, "weight of the KL term", "", (non_negative,)),
            "gamma": F((float,), 1.0, "weight of the pseudo-label CE term", "", (non_negative,)),
            "temperature": F((float,), 1.0, "distillation temperature T", "", (positive,)),
            "refresh_every": F((int,), 1, "send refreshed parameters every K test batches of a device", "",
                               (positive,)),
            "refresh_dtype": F((str,), "float32", "refresh payload precision: float32 or float16", "",
                               (one_of("float32", "float16"),)),
        }),
        "output": Section("Results folder contents.", {
            "dir": F((str,), "runs", "parent folder of run folders (overridden by --out)"),
            "timeline_bin_s": F((float,), 30.0, "width of the per-device timeline bins", "s", (positive,)),
            "plots": F((bool,), True, "write plots/*.png"),
        }),
    },
)


class Scenario:
    """Read-only attribute view of a resolved scenario mapping (`sc.uplink.bandwidth_mbps`)."""

    def __init__(self, data: dict[str, Any], source: str = "<scenario>"):
        object.__setattr__(self, "_data", data)
        object.__setattr__(self, "source", source)

    def __getattr__(self, name: str) -> Any:
        try:
            value = self._data[name]
        except KeyError:
            raise AttributeError(name) from None
        return Scenario(value, self.source) if isinstance(value, dict) else value

    def __getitem__(self, name: str) -> Any:
        return self.__getattr__(name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Scenario is read-only; use with_overrides()")

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self._data)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self._data, sort_keys=False)


# ---- loading -----------------------------------------------------------------------------------
class UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML that rejects a key given twice in one mapping (YAML says keys are unique; PyYAML
    would silently keep the last, e.g. a second `fleet:` section replacing the first)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {seen[key]}, again on line {line})",
                    key_node.start_mark)
            if isinstance(key, (str, int, float, bool)):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path, what: str = "scenario") -> dict[str, Any]:
    """A YAML file whose top level is a mapping (a scenario, a profile file)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no such {what} file: {path}", source=str(path))
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                          f"{exc.start}); save the {what} file as UTF-8", source=str(path)) from None
    try:
        data = yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(f"{where}invalid YAML ({getattr(exc, 'problem', exc)})", source=str(path)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"top level must be a mapping, got {type(data).__name__}", source=str(path))
    oversized = oversized_paths(data)
    if oversized:
        raise ConfigError(oversized, source=str(path))
    return data


MAX_NODES = 100_000  # values in one file after YAML aliases are expanded; scenarios need a few hundred


def _count_nodes(value: Any, budget: int = MAX_NODES) -> int:
    """Values under `value` counting every alias again (as a reader would expand them), up to budget + 1."""
    stack, n = [value], 0
    while stack and n <= budget:
        node = stack.pop()
        n += 1
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return n


def oversized_paths(data: Any, path: str = "") -> list[str]:
    """Problems for values that expand past MAX_NODES: YAML aliases of aliases (a 'billion laughs')
    keep a file small while a reader - or a message quoting the value - would never finish."""
    if _count_nodes(data) <= MAX_NODES:
        return []
    if isinstance(data, dict):
        found = [p for key, value in data.items() for p in oversized_paths(value, f"{path}.{key}" if path else str(key))]
        if found:
            return found
    return [f"{path or '<top>'}: expands to more than {MAX_NODES:,} values (YAML aliases of aliases?); a scenario "
            "needs a few hundred"]


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> list[str]:
    """Apply `a.b=value` / `a.list[0].c=value` strings in place (value parsed as YAML); return problems."""
    problems = []
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            problems.append(f"--set {item!r}: expected KEY=VALUE, e.g. uplink.bandwidth_mbps=2")
            continue
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            problems.append(f"--set {key.strip()}: value {show(text)} is not valid YAML ({getattr(exc, 'problem', exc)}); "
                            "quote a string that starts with a YAML symbol: --set 'name=\"[x\"'")
            continue
        big = oversized_paths(value, f"--set {key.strip()}")
        if big:
            problems += big
            continue
        problem = _set_path(data, _path_steps(key.strip()), value)
        if problem:
            problems.append(f"--set {key.strip()}: {problem}")
    return problems


def _path_steps(key: str) -> list[str | int]:
    steps: list[str | int] = []
    for part in key.split("."):
        name, *indices = part.replace("]", "").split("[")
        steps.append(name)
        steps += [int(i) if i.isdigit() else i for i in indices]
    return steps


def _set_path(node: Any, steps: list[str | int], value: Any) -> str | None:
    for depth, step in enumerate(steps):
        last = depth == len(steps) - 1
        if isinstance(step, int):
            if not isinstance(node, list) or step >= len(node):
                return f"index [{step}] does not exist"
            if last:
                node[step] = value
                return None
            node = node[step]
            continue
        if not isinstance(node, dict):
            return f"'{step}' is inside a value that is not a mapping"
        if last:
            node[step] = value
            return None
        if node.get(step) is None:
            node[step] = copy.deepcopy(_default_at(steps[: depth + 1]))
        node = node[step]
    return None


def _default_at(steps: list[str | int]) -> Any:
    """The schema default below `steps` (so `--set shift.segments[0].severity=5` edits the defaults)."""
    node: Any = default_scenario()
    for step in steps:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return {}
    return node if isinstance(node, (dict, list)) else {}


def validate(data: dict[str, Any], source: str = "<scenario>") -> Scenario:
    """Schema + registry validation; raises ConfigError listing every problem."""
    problems: list[str] = []
    resolved = resolve(SCHEMA, data, "", problems)
    _resolve_classes(resolved, problems)
    problems += _semantic_problems(resolved)
    if problems:
        raise ConfigError(problems, source=source)
    return Scenario(resolved, source)


FILE_KEYS = (("arrivals", "trace"), ("uplink", "trace"), ("downlink", "trace"), ("uplink", "outages", "trace"),
             ("downlink", "outages", "trace"), ("availability", "trace"), ("fleet", "profile"), ("cloud", "profile"))


def anchor_paths(data: dict[str, Any], folder: Path) -> None:
    """Relative file paths in a scenario file mean files next to it when they exist there (else the
    working directory), so `cemasim run scenarios/x.yaml` works from anywhere."""
    def fix(node: Any, steps: tuple[str, ...]) -> None:
        for step in steps[:-1]:
            node = node.get(step) if isinstance(node, dict) else None
        value = node.get(steps[-1]) if isinstance(node, dict) else None
        if isinstance(value, str) and (steps[-1] == "trace" or value.endswith((".yaml", ".yml"))) \
                and not Path(value).is_absolute() and (folder / value).is_file():
            node[steps[-1]] = str(folder / value)

    for steps in FILE_KEYS:
        fix(data, steps)
    classes = data.get("fleet", {}).get("classes") if isinstance(data.get("fleet"), dict) else None
    for cls in classes if isinstance(classes, list) else []:
        for steps in FILE_KEYS:
            fix(cls, steps[1:] if steps[0] == "fleet" else steps)


def load(path: str | Path | None = None, overrides: list[str] | None = None, seed: int | None = None) -> Scenario:
    """Read a scenario file (or the defaults), apply overrides and validate."""
    data = read_yaml(path) if path is not None else {}
    if path is not None:
        anchor_paths(data, Path(path).parent)
    problems = apply_overrides(data, overrides or [])
    if seed is not None:
        data["seed"] = seed
    source = str(path) if path is not None else "<defaults>"
    if problems:
        raise ConfigError(problems, source=source)
    return validate(data, source)


def default_scenario() -> dict[str, Any]:
    return defaults(SCHEMA)


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
                cls[key] = resolve(SCHEMA.fields[key], deep_merge(sc[key], cls[key]), f"{path}.{key}", problems)
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
    need(DATASETS, sc["data"]["dataset"], "data.dataset")
    name = sc["data"]["dataset"]
    dataset = DATASETS.get(name) if isinstance(name, str) and name in DATASETS else None
    root = sc["data"]["root"]
    if isinstance(root, str) and not Path(root).expanduser().is_dir():
        problems.append(f"data.root: no such folder: {root}")
    for role in ("edge", "foundation"):
        problems += _model_problems(sc["models"], role, dataset.channels if dataset else None)
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
    return problems


def _number(value: Any) -> float | None:
    """A usable number (already type-checked values only; anything else was reported)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    return float(value) if ok else None


def _size_problems(sc: dict[str, Any], views: list[dict[str, Any]]) -> list[str]:
    """What a run would allocate, bounded before it runs (the bounds are MAX_* above)."""
    problems = []
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
        if lengths and all(x is not None for x in lengths):
            bound("shift.segments", "the shortest segment", min(lengths), horizon)
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


def _model_problems(models: dict[str, Any], role: str, channels: int | None) -> list[str]:
    """A model name the registries do not know, a checkpoint that cannot load, or input channels
    that differ from the dataset's; cheap checks only (no external weights are read)."""
    from cemasim.errors import DataError
    from cemasim.models.external import input_shape_of, is_external
    from cemasim.models.resolve import check_checkpoint
    from cemasim.models.zoo import MODELS

    name, weights = models[role], models[f"{role}_weights"]
    if not isinstance(name, str):
        return []
    if is_external(name):
        try:
            shape = input_shape_of(name)
        except ConfigError as exc:
            return [f"models.{role}: {p}" for p in exc.problems]
    elif name in MODELS:
        shape = MODELS.get(name).input_shape
    else:
        return [f"models.{role}: {MODELS.unknown(name)} (or timm:ARCH / torchvision:ARCH)"]
    problems = []
    if channels is not None and shape[0] != channels:
        problems.append(f"models.{role}: {name} takes {shape[0]}-channel images but the dataset has {channels} "
                        f"channel{'s' if channels != 1 else ''}")
    if isinstance(weights, str) and weights != "random":
        path = Path(weights).expanduser()
        if not path.is_file():
            problems.append(f"models.{role}_weights: no such checkpoint file: {weights}")
        elif not is_external(name):
            try:
                check_checkpoint(name, path)
            except DataError as exc:
                problems.append(f"models.{role}_weights: {exc}")
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
    radio = sc["energy"]["radio"]
    if isinstance(radio, str) and radio not in RADIOS:
        problems.append(f"energy.radio: {RADIOS.unknown(radio)}")
    return problems


def profile_problems(spec: Any, path: str) -> list[str]:
    """A profile name, a profile file or an inline mapping that cannot be used."""
    from cemasim.models.cost import PROFILES, is_profile_file, load_profile_file

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
    from cemasim.models.cost import profile_from

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


def schema_markdown() -> str:
    """docs/scenario.md, generated so the documentation can never drift from the validator."""
    from cemasim.schema import document

    head = [
        "# Scenario keys",
        "",
        "Generated by `cemasim docs` from `cemasim/scenario.py`; do not edit by hand.",
        "Units live in key names and in the unit column; `x ln C` means a fraction of ln(number of classes).",
        "Any key can be overridden on the command line: `cemasim run FILE --set uplink.bandwidth_mbps=2`.",
        "",
    ]
    return "\n".join(head + document(SCHEMA)).rstrip() + "\n"
