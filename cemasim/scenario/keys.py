"""The scenario schema: every key with its type, default, unit, meaning and checks.

docs/scenario.md is generated from SCHEMA (`cemasim docs`), so the documentation cannot drift
from the validator. Bounds on what sizes memory or work are the MAX_* constants.
"""

from __future__ import annotations

from cemasim.csvfile import MAX_DEVICES  # also bounds the device indices of trace and interval files
from cemasim.models.profiles import PROFILE
from cemasim.scenario.classes import OVERRIDABLE
from cemasim.schema import (
    Field,
    Section,
    at_least,
    at_most,
    auto_or,
    between,
    non_negative,
    one_of,
    plain_name,
    positive,
    registered,
    show,
)

F = Field

# Bounds on what sizes memory or work, named in the messages: a typo (1e12 for 1e2) must be an error
# at validation, not a 37 GiB allocation or a run that never ends.

MAX_SAMPLES = 10**8  # samples planned per run (devices x rate_hz x duration_s)
MAX_PIECES = 10**7  # timeline bins, shift segments, outage/on-off periods per device
MAX_RETRIES = 100  # per message; Linux TCP gives up after 15 (tcp_retries2)

# Bounds where a hyper-parameter stops meaning anything (docs/usage.md, "Finite state"); each accepts every value
# the papers use. Extreme values inside them that still overflow stop the run (methods/optim.py).
LEARNING_RATE = (positive, at_least(1e-10, "a smaller step changes no float32 weight"),
                 at_most(10, "published rates are 1e-5 to 0.1; larger steps throw BN weights, 1 at the start, off"))
LR_BOUNDS = "in [1e-10, 10]: published TTA and distillation rates are 1e-5 to 0.1"


def module_names(v: list) -> str | None:
    """A plugins list: importable module names."""
    bad = [x for x in v if not isinstance(x, str) or not x.strip()]
    return None if not bad else f"must be a list of module names, got {show(bad[0])} among them"


def share(v: float) -> str | None:
    """A fraction that keeps something: 0 would send (or keep) nothing."""
    return None if 0 < v <= 1 else f"must be in (0, 1], got {v!r}"


def support_size(v: int) -> str | None:
    """T3A's filter_K: -1 keeps every support; 0 would leave classes without a prototype."""
    return None if v == -1 or v >= 1 else f"must be -1 (keep all) or at least 1, got {v!r}"


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
                   "(bursty: a good/bad Markov chain advanced per attempt); or a plugin's (`cemasim list "
                   "losses`)", "", (registered("cemasim.net.loss", "LOSS_MODELS"),)),
        "rate": F((float,), 0.0, "bernoulli: loss probability per attempt", "", (between(0, 1),)),
        "p_good_to_bad": F((float,), 0.01, "gilbert_elliott: good -> bad transition probability per attempt", "",
                           (between(0, 1),)),
        "p_bad_to_good": F((float,), 0.3, "gilbert_elliott: bad -> good transition probability per attempt", "",
                           (between(0, 1),)),
        "loss_good": F((float,), 0.0, "gilbert_elliott: loss probability in the good state", "", (between(0, 1),)),
        "loss_bad": F((float,), 0.5, "gilbert_elliott: loss probability in the bad state", "", (between(0, 1),)),
        "max_retries": F((int,), 5, "retransmissions before the message is dropped (every message: uploads, "
                         "reports, refreshes; the link idles during each timeout); at most 100, so that a link "
                         "whose attempts take no simulated time (retry_timeout_ms 0, no latency, loss rate 1) "
                         "still ends", "", (non_negative, at_most(MAX_RETRIES, "retransmissions of one message"))),
        "retry_timeout_ms": F((float,), None, "wait after a lost attempt before resending; null = one round trip "
                              "(2 x latency_ms) + 200 ms (Linux's minimum TCP RTO)", "ms", (non_negative,),
                              nullable=True),
    },
)

OUTAGES = Section(
    "Link outages: intervals with zero capacity.",
    {
        "process": F((str,), "none", "none; exponential (alternating up/down periods with exponential lengths); "
                     "trace (a CSV of down intervals: start_s,end_s[,device]); or a plugin's (`cemasim list "
                     "outages`)", "", (registered("cemasim.net.intervals", "OUTAGES"),)),
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
        "capacity": F((str,), None, "capacity model of the own link: constant (bandwidth_mbps), trace, or a "
                      "plugin's (`cemasim list capacities`); null = trace when trace is set, else constant", "",
                      (registered("cemasim.net.capacity_models", "CAPACITY_MODELS"),), nullable=True),
        "capacity_params": F((dict,), {}, "the capacity model's own parameters, as the model declares them (a "
                             "plugin's; see 'Capacity model parameters' below)"),
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
        "trace_bin_ms": F((float,), 100.0, "Mahimahi: delivery opportunities are counted in bins this wide "
                          "(at least 1 ms, the timestamps' resolution)", "ms",
                          (positive, at_least(1.0, "Mahimahi timestamps are whole milliseconds"))),
        "shared_mbps": F((float,), None, "capacity of a shared segment (access point, cell) behind the devices' "
                         "own links, served as shared_discipline says; null = none", "Mbit/s", (positive,),
                         nullable=True),
        "shared_discipline": F((str,), "fair", "how the shared segment serves the transfers crossing it: fair "
                               "(max-min fair fluid sharing, processor sharing on one segment) or fifo (in the "
                               "order they started, each taking what its own link allows, the rest passing to the "
                               "next: one drop-tail queue, what analysis/twin measures on a real stack)", "",
                               (one_of("fair", "fifo"),)),
        "group_size": F((int,), None, "devices per shared segment (consecutive devices of a class); null = the "
                        "whole class shares one", "", (positive,), nullable=True),
        "packet_header_bytes": F((int,), 0, "header bytes each packet adds on the wire: a message of S bytes "
                                 "travels as S + ceil(S / mss_bytes) x this (TCP/IPv4 with timestamps over "
                                 "Ethernet: 66); 0 = the message's bytes alone (analysis/twin measures the gap)",
                                 "B", (non_negative,)),
        "mss_bytes": F((int,), 1448, "payload bytes per packet (TCP's maximum segment size) when "
                       "packet_header_bytes > 0", "B", (positive,)),
        "loss": LOSS,
        "outages": OUTAGES,
    })


AVAILABILITY = Section(
    "Device availability: an off device neither predicts (samples arriving then are missed) nor sends or "
    "receives.",
    {
        "process": F((str,), "always", "always; onoff (alternating on/off periods with exponential lengths); trace "
                     "(a CSV of off intervals: start_s,end_s[,device]); or a plugin's (`cemasim list "
                     "availability`)", "", (registered("cemasim.net.intervals", "AVAILABILITY"),)),
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
        "plugins": F((list,), [], "importable modules that register methods, corruptions, capacity models or "
                     "any other kind `cemasim list` shows (docs/extending.md); imported before validation in "
                     "every process that runs the scenario, after the installed ones (entry points "
                     "`cemasim.plugins`); `--plugin MODULE` adds one",
                     "", (module_names,)),
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
            "batch_across_devices": F((bool, str), "auto", "host speed-up: merge edge forward passes of devices "
                                      "predicting at the same simulated instant into one call (the same floats "
                                      "as one call each); auto: on the CPU, for a class of batch-1 devices with "
                                      "aligned constant arrivals (docs/usage.md#speed-ups); false forces it off",
                                      "", (auto_or("true or false"),)),
            "predict_ahead": F((int, str), "auto", "host speed-up for devices predicting one sample at a time: "
                               "predict up to this many of a device's next samples in one pass while its norm "
                               "state holds (the same floats; a device that uploads holds as many images); auto: "
                               "on the CPU, 64, fewer when the fleet's held images would pass 256 MiB, none where "
                               "devices merge across; 0: off", "samples",
                               (auto_or("a number of samples", non_negative,
                                        at_most(4096, "samples predicted ahead")),)),
        }),
        "arrivals": Section("Per-device sample arrivals, grouped into test batches.", {
            "process": F((str,), "poisson", "constant, poisson, onoff (Poisson bursts), trace (a file) or a "
                         "plugin's (`cemasim list arrivals`)", "", (registered("cemasim.data.arrivals", "ARRIVALS"),)),
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
            "params": F((dict,), {}, "the method's own parameters, as the method declares them (a plugin's "
                        "method may; see 'Method parameters' below): unknown keys and bad values are errors"),
            "norm_mode": F((str,), "batch", "CEMA's BN statistics. batch: test-batch statistics in the edge, "
                           "student and foundation, only affine params travel (released is_tbr: false); tbr: "
                           "test-time batch renormalisation in all three, statistics set by the first batch each "
                           "model sees and sent with every refresh (released is_tbr: true); running: cemasim's "
                           "own, the edge predicts with running statistics from the source that the student's "
                           "train-mode distillation updates", "", (one_of("batch", "running", "tbr"),)),
            "bn_prior": F((float,), 0.0, "bn_adapt only: weight of the source statistics mixed with the "
                          "test-batch statistics (unbiased variance; the authors' BNAdaptation momentum is "
                          "1 - bn_prior)", "", (between(0, 1),)),
            "deployment": F((str,), None, "where the method runs; null = its own default. tent/pl/eta/eata/sar/"
                            "cotta/deyo/roid/rotta: cloud (default) = upload samples, the cloud adapts the device's "
                            "copy; edge = adapt on the device (its profile must allow training). Forward-only methods "
                            "(source, bn_adapt, onda, lame, t3a) run on the edge only; cema, upload_all, random_upload "
                            "and cloud_inference in the cloud only (`cemasim list methods`)",
                            "", (one_of("edge", "cloud"),), nullable=True),
            "lr": F((float,), None, "learning rate of tent/pl/eta/eata/sar/cotta/deyo/roid/rotta; null = the "
                    "preset's value for the method (method.preset); " + LR_BOUNDS, "", LEARNING_RATE, nullable=True),
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
            "sar_rho": F((float,), 0.05, "sar: sharpness neighbourhood radius (L2 over the adapted affine "
                         "tensors); at most 10: papers use 0.01 to 2 (SAR 0.05, SAM's grid to 0.5, ASAM's to 2), and a "
                         "larger radius exceeds the norm of the BN weights themselves, so nothing local is probed",
                         "", (positive, at_most(10, "SAM's neighbourhood would outsize the weights"))),
            "sar_reset": F((float,), 0.2, "sar: reset when the EMA of the loss falls below this", "",
                           (non_negative,)),
            "lame_knn": F((int,), 5, "lame: neighbours of the affinity graph; below arrivals.batch_size - 1 "
                          "(with more, every sample neighbours all others: one class wins the batch); batches of "
                          "one sample have no neighbours (LAME predicts as the source)", "", (positive,)),
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
            # t3a and deyo (cemasim/methods/t3a.py, deyo.py)
            "t3a_filter_k": F((int,), 100, "t3a: supports kept per class, the lowest-entropy ones (the authors' "
                              "filter_K, chosen from 1, 5, 20, 50, 100, -1); -1 or null = all (a device then holds "
                              "every feature it saw)", "supports", (support_size,), nullable=True),
            "deyo_margin": F((float,), 0.5, "deyo: entropy filter E < deyo_margin", "x ln C", (positive,)),
            "deyo_e0": F((float,), 0.4, "deyo: entropy weight exp(-(E - deyo_e0)) of the kept samples", "x ln C",
                         (positive,)),
            "deyo_plpd": F((float,), 0.2, "deyo: PLPD filter p(yhat|x) - p(yhat|x shuffled) > deyo_plpd (the "
                           "authors' default; their ImageNet-C ResNet-50-BN script uses 0.3)", "", (between(-1, 1),)),
            "deyo_patches": F((int,), 4, "deyo: the shuffled image is a deyo_patches x deyo_patches grid of tiles "
                              "(the authors' patch_len)", "",
                              (positive, at_most(16, "tiles per side of images of 28 px or more"))),
            # roid and rotta (cemasim/methods/roid.py, rotta.py); the authors' defaults
            "roid_momentum_src": F((float,), 0.99, "roid: weight ensembling after each step, p <- m p + (1 - m) "
                                   "p_source (1 = none)", "", (between(0, 1),)),
            "roid_temperature": F((float,), 1 / 3, "roid: sample weights exp(diversity x certainty / temperature), "
                                  "both scaled to [0, 1]", "",
                                  (at_least(0.02, "below 1/88 the weights exp(1 / temperature) overflow float32"),)),
            "rotta_alpha": F((float,), 0.05, "rotta: robust BN statistics <- (1 - alpha) x theirs + alpha x the "
                             "batch's", "", (between(0, 1),)),
            "rotta_nu": F((float,), 0.001, "rotta: teacher <- (1 - nu) teacher + nu student after each update", "",
                          (between(0, 1),)),
            "rotta_memory": F((int,), 64, "rotta: capacity of the category-balanced memory bank (images held by "
                              "each device)", "samples", (positive, at_most(10**4, "images held per device"))),
            "rotta_update_every": F((int,), 64, "rotta: the student and the teacher update every this many "
                                    "samples, on the memory bank", "samples", (positive,)),
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
            "policy": F((str,), "dynamic", "which selected samples travel (methods/policies.py): static (E_max "
                        "fixed, same as dynamic_e_max: false), dynamic (the paper's), budget (bytes per second at "
                        "a target), staleness (not sent if the predicted queueing delay exceeds max_delay_s), "
                        "backpressure (refreshes carry the cloud's backlog; the device sends less above "
                        "backlog_target); the last three gate cema, upload_all and random_upload; or a plugin's "
                        "(`cemasim list policies`)", "",
                        (registered("cemasim.methods.policies", "SELECTION_POLICIES"),)),
            "budget_bytes_per_s": F((float,), None, "budget policy: target upload rate per device; null = "
                                    "link_fraction of the uplink rate the device measures", "bytes/s",
                                    (positive,), nullable=True),
            "link_fraction": F((float,), 0.8, "budget policy: share of the measured uplink rate to use", "",
                               (between(0, 1), positive)),
            "window_s": F((float,), 60.0, "budget policy: the window whose bytes may not exceed the target rate x "
                          "window_s (windows start at multiples of it)", "s", (positive,)),
            "max_delay_s": F((float,), 10.0, "staleness policy: longest predicted queueing delay worth sending; "
                             "uploads that waited longer are discarded at the head of the queue (expired)", "s",
                             (positive,)),
            "backlog_target": F((int,), 8, "backpressure policy: uploads waiting at the cloud for a device above "
                                "which it halves its share of uploads", "uploads", (positive,)),
        }),
        "upload": Section("How selected samples are encoded and queued on the device.", {
            "encoding": F((str,), "png", "payload encoder: raw (uint8 pixels), png or jpeg", "",
                          (one_of("raw", "png", "jpeg"),)),
            "jpeg_quality": F((int,), 90, "JPEG quality when encoding is jpeg", "", (between(1, 100),)),
            "downscale": F((float,), 1.0, "side-length factor in (0, 1] applied before encoding (area "
                           "averaging, at least 1 pixel a side); the cloud resizes the decoded image back to the "
                           "model's input (bilinear) and trains on that", "", (share,)),
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
                           "(the device with most uploads waiting: inbox, unfilled chunk, queued job), or a plugin's "
                           "(`cemasim list schedulers`)", "", (registered("cemasim.scheduling", "SCHEDULERS"),)),
            "ingress_mbps": F((float,), None, "cloud ingress capacity shared by every uplink transfer; null = "
                              "unlimited", "Mbit/s", (positive,), nullable=True),
            "egress_mbps": F((float,), None, "cloud egress capacity shared by every downlink transfer; null = "
                             "unlimited", "Mbit/s", (positive,), nullable=True),
            "profile": F((str,), "t4", "cloud accelerator profile name or inline mapping", alt=PROFILE),
            "chunk_size": F((int,), 32, "uploaded samples per foundation + distillation step", "samples",
                            (positive,)),
            "replay_capacity": F((int,), 10000, "FIFO replay buffer capacity", "samples", (positive,)),
            "replay_min": F((int,), 256, "replay starts once the buffer holds this many (at most replay_capacity; "
                            "replay-only steps start above it, so below replay_capacity when replay_only_batch > 0)",
                            "samples", (non_negative,)),
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
                               "(imagenet 2.5e-4; method.preset); " + LR_BOUNDS, "", LEARNING_RATE, nullable=True),
            "distill_lr": F((float,), None, "SGD lr of the distillation step; null = the preset's (imagenet "
                            "2.5e-3; method.preset); " + LR_BOUNDS, "", LEARNING_RATE, nullable=True),
            "momentum": F((float,), 0.9, "SGD momentum of both steps", "", (between(0, 1),)),
            "e0": F((float,), 0.4, "E0 of the cloud's sample weights exp(E0 - E) in the foundation step and the "
                    "distillation, for every method on CEMA's cloud (the authors' 0.4 ln C; independent of "
                    "selection.e_max, which only selects). exp(E0 - E) = C^e0 exp(-E): e0 scales both steps' "
                    "learning rates by C^e0, so at most 1 (a factor C)", "x ln C",
                    (positive, at_most(1, "above, E0 only multiplies the learning rates by C^e0"))),
            "alpha": F((float,), 3.0, "weight of the student entropy term", "", (non_negative,)),
            "beta": F((float,), 3.0, "weight of the KL term", "", (non_negative,)),
            "gamma": F((float,), 1.0, "weight of the pseudo-label CE term", "", (non_negative,)),
            "temperature": F((float,), 1.0, "distillation temperature T, in [0.001, 100]: papers use 0.04 to 20; "
                             "the T^2-scaled KL term vanishes as T -> 0 and its float32 softened logits lose their "
                             "differences as T grows", "",
                             (positive, at_least(1e-3, "the KL term would vanish"),
                              at_most(100, "float32 softened logits would lose their differences"))),
            "refresh_every": F((int,), 1, "send refreshed parameters every K test batches of a device", "",
                               (positive,)),
            "refresh_codec": F((str,), "float32", "how a refresh travels (docs/codecs.md). float32, float16, "
                               "bfloat16: every tensor cast; int8: affine uint8 with a float32 scale and a 1-byte "
                               "zero point per tensor; int8_channel: the same per channel (dim 0; a norm layer's "
                               "vector pays them per value); topk: per tensor the cloud.refresh_topk share of "
                               "entries that differ most from what the device holds (float32 values and indices; "
                               "the rest travels later: error feedback); stats: the BatchNorm running statistics "
                               "only (method.norm_mode tbr or running)", "",
                               (registered("cemasim.models.codecs", "CODECS"),)),
            "refresh_topk": F((float,), 0.1, "topk refresh codec: share k of each tensor's entries sent, in (0, 1] "
                              "(ceil(k n) entries, at least one)", "", (share,)),
        }),
        "output": Section("Results folder contents.", {
            "dir": F((str,), "runs", "parent folder of run folders (overridden by --out)"),
            "timeline_bin_s": F((float,), 30.0, "width of the per-device timeline bins", "s", (positive,)),
            "plots": F((bool,), True, "write plots/*.png"),
        }),
    },
)


def schema_markdown() -> str:
    """docs/scenario.md, generated so the documentation can never drift from the validator."""
    from cemasim.schema import document

    head = [
        "# Scenario keys",
        "",
        "Generated by `cemasim docs` from `cemasim/scenario/keys.py`; do not edit by hand.",
        "Units live in key names and in the unit column; `x ln C` means a fraction of ln(number of classes).",
        "Any key can be overridden on the command line: `cemasim run FILE --set uplink.bandwidth_mbps=2`.",
        "Every time (unit s or ms) is at most 10^9 s (~32 years); a time that must be > 0 is at least 1 µs, and a rate "
        "in 1/s at least 10^-9 (so that 1 / rate and the windows of a run stay finite numbers).",
        "",
    ]
    return "\n".join(head + document(SCHEMA) + declared_params_markdown()).rstrip() + "\n"


def declared_params_markdown() -> list[str]:
    """A section for each kind of registered entry that may declare parameters of its own (plugins' too)."""
    from cemasim.methods import METHODS
    from cemasim.net.capacity_models import CAPACITY_MODELS

    return (_declared("Method parameters", ["method.params"], "methods", METHODS)
            + _declared("Capacity model parameters", ["uplink.capacity_params", "downlink.capacity_params"],
                        "capacity models", CAPACITY_MODELS))


def _declared(title: str, keys: list[str], kind: str, registry) -> list[str]:
    from cemasim.schema import document

    where = " or ".join(f"`{k}`" for k in keys)
    lines = [f"## {title}", "", f"An entry may declare parameters of its own, set under {where} "
             f"(docs/extending.md). The {kind} registered in this process that declare them:", ""]
    declared = [(e.name, e.meta["params"]) for e in registry.entries() if e.meta.get("params") is not None]
    for name, section in declared:
        lines += document(section, f"{keys[0]} ({name})", level=3)
    return lines + ([] if declared else [f"None of the built-in {kind} does.", ""])
