"""How fast is a script's training loop, and how close to the machine's matmul peak?

Runs the script's own `main` (the real loop: env step, replay sampling, `utd` critic updates,
one actor + temperature update) at the paper's configuration for a short budget, counts the
matmul FLOPs of one env step with torch's FlopCounterMode, and measures the fp32 matmul peak
of this machine in the same process, so the share is not compared against another day's peak.

    python tools/speed.py                         # sac_fast.py, paper config, ~2 minutes on 2 CPU cores
    python tools/speed.py --steps 300 --num-qs 10 --utd 4 --batch-size 256
    python tools/speed.py --no-malloc-tuning      # what keep_freed_memory() is worth
    python tools/speed.py --script calql_offline  # one Cal-QL gradient step (locomotion preset)
    python tools/speed.py --table                 # every script's updates, one markdown table (benchmark.sh speed)
    python tools/speed.py --precision bf16        # the loop with --precision bf16 (--table: fp32 and bf16 rows)
    python tools/speed.py --table --compile --inductor cpp.use_two_step_variance_threshold=0  # an Inductor option
"""

import argparse
import importlib
import os
import sys
import tempfile
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import wsrl_utils as U  # noqa: E402  (support code: environments, precision, memory)


def sync(device: torch.device) -> None:
    """GPU kernels run asynchronously: wait for them before reading the clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(seconds: float = 1.5, device: torch.device = torch.device("cpu"), dtype=torch.float32) -> float:
    """Best sustained GFLOP/s of square matmuls in `dtype` (sizes where BLAS does best; on a GPU
    larger ones are needed to fill it)."""
    best = 0.0
    for n in (512, 1024) if device.type == "cpu" else (4096, 8192):
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        for _ in range(3):
            a @ b
        sync(device)
        start, k = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            a @ b
            k += 1
            if k % 10 == 0:
                sync(device)
        sync(device)
        best = max(best, 2 * n**3 * k / (time.perf_counter() - start) / 1e9)
    return best


def flops_per_env_step(S, args, obs_dim: int, act_dim: int) -> float:
    """Matmul FLOPs of one env step's updates plus its one action selection."""
    actor = S.Actor(obs_dim, act_dim, args.actor_hidden, args.actor_layers, args.last_hidden_init_scale)
    critic = S.QEnsemble(obs_dim, act_dim, args.critic_hidden, args.critic_layers, args.num_qs, args.last_hidden_init_scale)
    target = S.QEnsemble(obs_dim, act_dim, args.critic_hidden, args.critic_layers, args.num_qs, args.last_hidden_init_scale)
    alpha_param = torch.zeros((), requires_grad=True)
    opts = S.make_optimizers(actor, critic, alpha_param, args)
    n = args.utd * args.batch_size
    batch = {"obs": torch.randn(n, obs_dim), "actions": torch.rand(n, act_dim) * 2 - 1, "rewards": torch.randn(n),
             "next_obs": torch.randn(n, obs_dim), "terminals": torch.zeros(n)}
    with FlopCounterMode(display=False) as counter:
        S.sac_update(actor, critic, target, alpha_param, *opts, batch, args, -float(act_dim))
        actor.act(torch.zeros(obs_dim).numpy(), deterministic=False)
    return counter.get_total_flops()


def time_parts(S, args, obs_dim: int, act_dim: int, repeats: int = 20) -> tuple[float, float]:
    """Milliseconds of one critic update (batch_size) and of one actor + temperature update
    (utd * batch_size), timed apart, to show where an env step's time goes."""
    actor = S.Actor(obs_dim, act_dim, args.actor_hidden, args.actor_layers, args.last_hidden_init_scale)
    critic = S.QEnsemble(obs_dim, act_dim, args.critic_hidden, args.critic_layers, args.num_qs, args.last_hidden_init_scale)
    target = S.QEnsemble(obs_dim, act_dim, args.critic_hidden, args.critic_layers, args.num_qs, args.last_hidden_init_scale)
    alpha_param = torch.zeros((), requires_grad=True)
    actor_opt, critic_opt, alpha_opt = S.make_optimizers(actor, critic, alpha_param, args)
    n = args.utd * args.batch_size
    batch = {"obs": torch.randn(n, obs_dim), "actions": torch.rand(n, act_dim) * 2 - 1, "rewards": torch.randn(n),
             "next_obs": torch.randn(n, obs_dim), "terminals": torch.zeros(n)}
    minibatch = {k: v[: args.batch_size] for k, v in batch.items()}

    def ms(fn):
        for _ in range(3):
            fn()
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        return 1000 * (time.perf_counter() - start) / repeats

    with U.autocast(args, torch.device("cpu")):  # as sac_update runs them (--precision)
        critic_ms = ms(lambda: S.update_critic(critic, target, actor, alpha_param, critic_opt, minibatch, args))
        actor_ms = ms(lambda: S.update_actor_and_alpha(actor, critic, alpha_param, actor_opt, alpha_opt, batch, args,
                                                       -float(act_dim), args.max_target_backup))
    return critic_ms, actor_ms


def calql_step(S, a, obs_dim: int, act_dim: int, repeats: int = 10) -> tuple[float, float]:
    """Matmul FLOPs and milliseconds of one Cal-QL gradient step (critic with the CQL term on
    batch_size transitions, then actor + temperature), the step of phase 1 and of fine-tuning
    at UTD 1, on the locomotion preset."""
    args = S.Args(num_qs=a.num_qs, batch_size=a.batch_size, critic_hidden=a.hidden, actor_hidden=a.hidden,
                  precision=a.precision)
    U.apply_domain_preset(args, "locomotion")
    actor = S.Actor(obs_dim, act_dim, args.actor_hidden, args.actor_layers, args.last_hidden_init_scale)
    critic = S.QEnsemble(obs_dim, act_dim, args.critic_hidden, args.critic_layers, args.num_qs, args.last_hidden_init_scale)
    target = S.QEnsemble(obs_dim, act_dim, args.critic_hidden, args.critic_layers, args.num_qs, args.last_hidden_init_scale)
    alpha_param, cql_lagrange_param = torch.zeros((), requires_grad=True), torch.zeros((), requires_grad=True)
    opts = S.make_optimizers(actor, critic, alpha_param, args)
    cql_opt = torch.optim.Adam([cql_lagrange_param])
    n = args.batch_size
    batch = {"obs": torch.randn(n, obs_dim), "actions": torch.rand(n, act_dim) * 2 - 1, "rewards": torch.randn(n),
             "next_obs": torch.randn(n, obs_dim), "terminals": torch.zeros(n), "mc_returns": torch.randn(n)}

    def step():
        S.calql_update(actor, critic, target, alpha_param, cql_lagrange_param, opts[0], opts[1], opts[2], cql_opt, batch,
                       args, -float(act_dim))

    with FlopCounterMode(display=False) as counter:
        step()
    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return counter.get_total_flops(), 1000 * (time.perf_counter() - start) / repeats


# ---------------------------------------------------------------------------------------------
# --table: every script's own update functions at the paper's configuration
# ---------------------------------------------------------------------------------------------
PROFILES = []  # --profile: (row name ending in its precision, {category: share of the time}, the matmuls' GFLOP/s
#              while they run), filled by measure()
CATEGORIES = (("matmul", ("mm", "matmul", "linear")), ("LayerNorm", ("layer_norm",)), ("Adam", ("adam",)),
              ("compiled kernels (Inductor)", ("compiledfxgraph", "compiledfunction", "cpp_fused", "triton", "inductor")))


def where_time_goes(fn, device: torch.device, calls: int = 5) -> tuple[dict, float]:
    """torch.profiler over `calls` calls: the share of self time (CPU, and the GPU's on a GPU) by
    kind of operator (what no category names is "elementwise and the rest"), and the matmuls' own
    milliseconds per call."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(calls):
            fn()
        sync(device)
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    shares, total = {}, 0.0
    for event in prof.key_averages():
        t = getattr(event, key)
        total += t
        kind = next((label for label, names in CATEGORIES if any(n in event.key.lower() for n in names)),
                    "elementwise and the rest")
        shares[kind] = shares.get(kind, 0.0) + t
    return ({k: v / total for k, v in shares.items()} if total else {}), shares.get("matmul", 0.0) / 1000 / calls


def measure(fn, repeats: int, device: torch.device, profile_as: str = "") -> tuple[float, float]:
    """Matmul FLOPs of one call and its mean milliseconds (after 5 warm-up calls); with
    `profile_as` (--profile), where its time goes too (PROFILES)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    for _ in range(5):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    ms = 1000 * (time.perf_counter() - start) / repeats
    if profile_as:  # (the FLOPs counted are all matmuls': their rate while they run is FLOPs / matmul time)
        shares, matmul_ms = where_time_goes(fn, device)
        PROFILES.append((profile_as, shares, counter.get_total_flops() / matmul_ms / 1e6 if matmul_ms else 0.0))
    return counter.get_total_flops(), ms


def update_rows(name: str, a, obs_dim: int, act_dim: int, device: torch.device, precision: str,
                graphs: bool = False, compile: bool = False) -> list:
    """[(script, what, precision, unit, flops, ms)] for the update(s) script `name` runs, built
    from ITS OWN functions (the marked copies are identical, but each script is timed as it is).
    `graphs` (--graphs, on a GPU): through --cuda-graphs' wrapper instead (capturable Adam, each
    update recorded once, then replayed); its rows say "CUDA graph". `compile` (--compile): through
    --compile's wrapper (the whole update compiled once; not timed: its first calls); rows say
    "compiled"."""
    S = importlib.import_module(name)
    args = S.Args(precision=precision, cuda_graphs=graphs)
    if name != "jsrl":  # (jsrl.py takes its sizes from its checkpoint)
        U.apply_domain_preset(args, "locomotion")
    for key, value in dict(num_qs=a.num_qs, batch_size=a.batch_size, critic_hidden=a.hidden, actor_hidden=a.hidden,
                           critic_layers=2, actor_layers=2).items():
        setattr(args, key, value)
    if args.last_hidden_init_scale is None:  # jsrl.py takes it from its checkpoint
        args.last_hidden_init_scale = 0.01
    if args.num_min_qs is None:  # jsrl.py: from the domain (2 on locomotion)
        args.num_min_qs = 2
    actor = S.Actor(obs_dim, act_dim, args.actor_hidden, args.actor_layers, args.last_hidden_init_scale).to(device)
    critic = S.QEnsemble(obs_dim, act_dim, args.critic_hidden, args.critic_layers, args.num_qs, args.last_hidden_init_scale).to(device)
    target = S.QEnsemble(obs_dim, act_dim, args.critic_hidden, args.critic_layers, args.num_qs, args.last_hidden_init_scale).to(device)
    alpha_param = torch.zeros((), requires_grad=True, device=device)
    opts = S.make_optimizers(actor, critic, alpha_param, args)

    def batch(n: int) -> dict:
        b = {"obs": torch.randn(n, obs_dim), "actions": torch.rand(n, act_dim) * 2 - 1, "rewards": torch.randn(n),
             "next_obs": torch.randn(n, obs_dim), "terminals": torch.zeros(n), "mc_returns": torch.randn(n)}
        return {k: v.to(device) for k, v in b.items()}

    updates = []  # (what, unit, update(batch), batch)
    if hasattr(S, "calql_update"):
        cql_lagrange_param = torch.zeros((), requires_grad=True, device=device)
        cql_opt = U.Adam([cql_lagrange_param], **U.adam_options(device, args))
        # (Cal-QL always backs up the best of 10 sampled next actions: no flag to set)
        updates.append(("Cal-QL step (offline; online at UTD 1)", "gradient steps/s",
                        lambda b: S.calql_update(actor, critic, target, alpha_param, cql_lagrange_param, *opts, cql_opt,
                                                 b, args, -float(act_dim)), batch(args.batch_size)))
    if hasattr(S, "iql_update"):
        value = S.ValueNet(obs_dim, args.critic_hidden, args.critic_layers).to(device)
        value_opt = U.Adam(value.parameters(), lr=3e-4, **U.adam_options(device, args))
        updates.append(("IQL step (offline)", "gradient steps/s",
                        lambda b: S.iql_update(actor, critic, target, value, opts[0], opts[1], value_opt, b, args),
                        batch(args.batch_size)))
    if hasattr(S, "sac_update"):
        args.utd = a.utd
        args.max_target_backup = False  # SAC on locomotion: one next action (App. I; antmaze would back up 10)
        updates.append((f"SAC, UTD {args.utd}: {args.utd} critic + 1 actor update per env step", "env-steps/s",
                        lambda b: S.sac_update(actor, critic, target, alpha_param, *opts, b, args, -float(act_dim)),
                        batch(args.utd * args.batch_size)))
    recorder = U.CudaGraphs(enabled=graphs, compile=compile)  # a plain call unless `graphs` or `compile`
    if compile:
        wrapped = {what: recorder.wrap(update) for what, _, update, _ in updates}
        return [(name, what + ", compiled", precision, unit,
                 *measure(lambda: wrapped[what](b), a.repeats, device,
                          a.profile and f"{name}.py, {what}, compiled, {precision}")) for what, unit, update, b in updates]
    label = ", CUDA graph" if graphs else ""
    return [(name, what + label, precision, unit,
             *measure(lambda: recorder.run(what, update, b), a.repeats, device,
                      a.profile and f"{name}.py, {what}{label}, {precision}")) for what, unit, update, b in updates]


def print_table(a) -> None:
    device = torch.device(a.device if a.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    env = U.build_env(a.env_id, 0)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    U.keep_freed_memory()
    precisions = ["fp32", "bf16"] if a.precision in (None, "both") else [a.precision]
    modes = [(False, False)] + ([(True, False)] if a.graphs and device.type == "cuda" else []) + (
        [(False, True)] if a.compile else [])

    def peak_now():
        return {p: matmul_peak(a.peak_seconds, device, torch.float32 if p == "fp32" else torch.bfloat16)
                for p in precisions}

    # The peak is measured before and after the rows and the mean taken: a shared VM's speed drifts
    # (this project's VM measured 139 to 394 fp32 GFLOP/s on different days: docs/speed.md), and a
    # share of the peak is only worth something when both were measured under the same conditions.
    before = peak_now()
    rows = []
    for name in a.scripts.split(","):
        for precision in precisions:
            for graphs, compile in modes:
                for row in update_rows(name, a, obs_dim, act_dim, device, precision, graphs, compile):
                    # each row as soon as it is measured (stderr, flushed): a run cut short by a time
                    # limit (tools/gpu_session.sh caps every step) keeps what it measured
                    print(f"measured: {row[0]}.py | {row[1]} | {row[2]} | {row[-1]:.2f} ms per step",
                          file=sys.stderr, flush=True)
                    rows.append(row)
    after = peak_now()
    peaks = {p: (before[p] + after[p]) / 2 for p in precisions}
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"CPU, {torch.get_num_threads()} threads")
    print(f"Updates only (no env step, no replay sampling), {a.env_id}, {a.num_qs} critics {a.hidden}x{a.hidden} "
          f"(2 layers), batch {a.batch_size}, torch {torch.__version__}, {where}, matmul peak "
          + ", ".join(f"{p} {peak:.0f} GFLOP/s" for p, peak in peaks.items())
          + " measured in this process, the mean of before and after the rows (the share of peak is of the row's "
          "precision). `python tools/speed.py` times the whole loop of sac_fast.py on the CPU, env steps included.\n")
    if drift_warning(before, after):
        print(drift_warning(before, after) + "\n")
    print("| script | update | precision | rate | GFLOP per step | ms per step | GFLOP/s | share of peak |")
    print("|---|---|---|---|---|---|---|---|")
    for script, what, precision, unit, flops, ms in rows:
        achieved = flops / ms / 1e6
        print(f"| {script}.py | {what} | {precision} | {1000 / ms:.1f} {unit} | {flops / 1e9:.3g} | {ms:.1f} | "
              f"{achieved:.0f} | {100 * achieved / peaks[precision]:.0f}% |")
    if PROFILES:  # --profile
        kinds = [label for label, _ in CATEGORIES] + ["elementwise and the rest"]
        print("\nWhere the time goes (torch.profiler, self time over 5 calls, share by kind of operator; a compiled "
              "update's fused kernels count as one kind, with the matmuls it calls out to under matmul). The last "
              "column is the matmuls' own rate while they run (the update's FLOPs over the matmuls' time), as a share "
              "of the peak: the ceiling of the update's share of peak if everything else took no time.\n")
        print("| update | " + " | ".join(kinds) + " | matmuls alone: share of peak |")
        print("|---" * (len(kinds) + 2) + "|")
        for name, shares, matmul_rate in PROFILES:
            precision = name.rsplit(", ", 1)[1]  # (every row name ends in its precision)
            print(f"| {name} | " + " | ".join(f"{100 * shares.get(k, 0):.0f}%" for k in kinds)
                  + f" | {100 * matmul_rate / peaks[precision]:.0f}% |")


def drift_warning(before: dict, after: dict, limit: float = 0.1) -> str:
    """A warning when a matmul peak measured before and after the rows differs by more than `limit`
    of their mean ({precision: GFLOP/s} each); "" when the machine held its speed."""
    if max(abs(after[p] - before[p]) / ((after[p] + before[p]) / 2) for p in before) <= limit:
        return ""
    return ("WARNING: the machine's speed moved during the measurement (matmul peak before -> after: "
            + ", ".join(f"{p} {before[p]:.0f} -> {after[p]:.0f} GFLOP/s" for p in before)
            + "); the shares of peak below are uncertain by as much. Rerun on a quieter machine.")


def set_inductor_option(parser, option: str) -> None:
    """--inductor KEY=VALUE: torch._inductor.config.KEY = VALUE (a Python literal), read by every
    compile after it; an unknown key is an error, not a silent no-op."""
    import ast

    import torch._inductor.config as inductor_config

    key, sep, text = option.partition("=")
    *path, name = key.split(".")
    owner = inductor_config
    try:
        for part in path:
            owner = getattr(owner, part)
        getattr(owner, name)
    except AttributeError:
        parser.error(f"--inductor {option}: torch._inductor.config has no option {key} (torch {torch.__version__})")
    if not sep:
        parser.error(f"--inductor {option}: give KEY=VALUE, e.g. cpp.use_two_step_variance_threshold=0")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text  # a bare word: a string option
    setattr(owner, name, value)


def loop_args(S, a):
    """The script's Args for the timed loop: the paper's config on locomotion, with the values its
    main() would fill in (the FLOPs are counted before main runs)."""
    args = S.Args(env_id=a.env_id, num_qs=a.num_qs, utd=a.utd, batch_size=a.batch_size, critic_hidden=a.hidden,
                  actor_hidden=a.hidden, learning_starts=1000, online_steps=1000 + a.steps,
                  eval_interval=10**9, eval_episodes=1, exp_name="speed", precision=a.precision, compile=a.compile,
                  resume_interval=0)
    U.apply_domain_preset(args, "locomotion")  # the sizes a flag left to the domain (2 layers, ...)
    args.num_min_qs, args.max_target_backup = 2, False  # as main() sets them on locomotion (FLOPs are counted before it)
    return args


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--script", default="sac_fast", help="module name of the script to time")
    p.add_argument("--env-id", default="Hopper-v5")
    p.add_argument("--steps", type=int, default=300, help="env steps with updates to time")
    p.add_argument("--num-qs", type=int, default=10)
    p.add_argument("--utd", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--no-malloc-tuning", action="store_true",
                   help="skip the script's keep_freed_memory(), to measure what it is worth")
    p.add_argument("--table", action="store_true",
                   help="time every script's own update functions (no env loop) and print one markdown table")
    p.add_argument("--repeats", type=int, default=30, help="with --table: timed calls per update")
    p.add_argument("--device", default="auto", help="with --table: cpu, cuda, or auto (cuda when there is one)")
    p.add_argument("--compile", action="store_true",
                   help="the loop with --compile (its compile time left out of the rate, and printed); with --table: each "
                        "update also through --compile (compiled whole, once; compile time not timed)")
    p.add_argument("--profile", action="store_true",
                   help="with --table: also where each update's time goes (torch.profiler), by kind of operator")
    p.add_argument("--scripts", default="sac_fast,calql_offline,wsrl_calql_sac,wsrl_iql_sac,jsrl",
                   help="with --table: which scripts' updates (comma-separated module names)")
    p.add_argument("--peak-seconds", type=float, default=1.5,
                   help="with --table: seconds per matrix size of each matmul-peak measurement (two per precision)")
    p.add_argument("--inductor", action="append", default=[], metavar="KEY=VALUE",
                   help="with --compile: set an option of torch._inductor.config before compiling, to time it "
                        "(e.g. cpp.use_two_step_variance_threshold=0); repeatable")
    p.add_argument("--graphs", action="store_true",
                   help="with --table on a GPU: each update also through --cuda-graphs (recorded once, replayed)")
    p.add_argument("--precision", choices=["fp32", "bf16", "both"], default=None,
                   help="the scripts' --precision (default: fp32; --table: both, one row each)")
    a = p.parse_args()
    for option in a.inductor:
        set_inductor_option(p, option)
    if a.table:
        print_table(a)
        return
    if a.precision == "both":
        p.error("--precision both is for --table; time the loop once per precision")
    a.precision = a.precision or "fp32"

    S = importlib.import_module(a.script)
    if a.no_malloc_tuning:
        U.keep_freed_memory = lambda: None
    if hasattr(S, "calql_update"):  # Cal-QL: the gradient step is the unit (offline: no env step)
        env = U.build_env(a.env_id, 0)
        U.keep_freed_memory()
        flops, ms = calql_step(S, a, env.observation_space.shape[0], env.action_space.shape[0])
        peak = matmul_peak()
        achieved = flops / ms / 1e6
        print("| script | config | gradient steps/s | GFLOP/step | GFLOP/s | fp32 matmul peak | share of peak |")
        print("|---|---|---|---|---|---|---|")
        print(f"| {a.script}.py | {a.env_id}, {a.num_qs} critics {a.hidden}x{a.hidden}, batch {a.batch_size}, 3 x 10 CQL "
              f"actions, {torch.get_num_threads()} threads | {1000 / ms:.1f} | {flops / 1e9:.2f} | {achieved:.0f} | "
              f"{peak:.0f} GFLOP/s | {100 * achieved / peak:.0f}% |")
        return
    args = loop_args(S, a)
    env = U.build_env(a.env_id, 0)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    U.keep_freed_memory()  # as main() does, so the FLOP count runs under the same allocator
    flops = flops_per_env_step(S, args, obs_dim, act_dim)
    critic_ms, actor_ms = time_parts(S, args, obs_dim, act_dim)
    with tempfile.TemporaryDirectory() as tmp:  # the run's logs are not kept
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            sps = S.main(args)["sps"]
        finally:
            os.chdir(cwd)
    compile_s = sum(U.COMPILE_SECONDS)  # (--compile: paid once, then cached on disk; not part of the rate)
    run_s, rest_s = a.steps / sps, a.steps / sps - compile_s
    if rest_s <= 0:
        raise SystemExit(f"error: the compile took {compile_s:.1f} s of the run's {run_s:.1f} s: no time is left to "
                         "give a rate. Time more steps (--steps).")
    short = rest_s < 0.25 * run_s  # a rate from a small remainder of the run moves with any error in the compile time
    sps = a.steps / rest_s
    peak = matmul_peak(dtype=torch.bfloat16 if a.precision == "bf16" else torch.float32)  # the run's own precision
    achieved = sps * flops / 1e9
    print(f"\n| script | config | env-steps/s | GFLOP/step | GFLOP/s | {a.precision} matmul peak | share of peak |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {a.script}.py | {a.env_id}, {a.num_qs} critics {a.hidden}x{a.hidden}, UTD {a.utd}, batch {a.batch_size}, "
          f"{a.precision}{', compiled' if a.compile else ''}, {torch.get_num_threads()} threads | {sps:.1f} | "
          f"{flops / 1e9:.2f} | {achieved:.0f} | {peak:.0f} GFLOP/s | {100 * achieved / peak:.0f}% |")
    if a.compile:
        print(f"\n--compile took {compile_s:.0f} s in this run (left out of the rate above)")
        if short:
            print(f"WARNING: the compile took {100 * compile_s / run_s:.0f}% of the run, so the rate above rests on "
                  f"{rest_s:.1f} s: time more steps (--steps) for a rate to report.")
    print(f"\none critic update ({args.batch_size} transitions): {critic_ms:.1f} ms x {args.utd}; one actor + "
          f"temperature update ({args.utd * args.batch_size} transitions): {actor_ms:.1f} ms"
          + ("; malloc tuning OFF" if a.no_malloc_tuning else ""))


if __name__ == "__main__":
    main()
