"""How fast is a script's training loop, and how close to the machine's matmul peak?

Runs the script's own `main` (the real loop: env step, replay sampling, `utd` critic updates,
one actor + temperature update) at the paper's configuration for a short budget, counts the
matmul FLOPs of one env step with torch's FlopCounterMode, and measures the fp32 matmul peak
of this machine in the same process, so the share is not compared against another day's peak.

    python tools/speed.py                         # sac_fast.py, paper config, ~2 minutes on 2 CPU cores
    python tools/speed.py --steps 300 --num-qs 10 --utd 4 --batch-size 256
    python tools/speed.py --no-malloc-tuning      # what keep_freed_memory() is worth
    python tools/speed.py --script calql_offline  # one Cal-QL gradient step (locomotion preset)
"""

import argparse
import dataclasses
import importlib
import os
import sys
import tempfile
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def matmul_peak(seconds: float = 1.5) -> float:
    """Best sustained fp32 GFLOP/s of square matmuls (sizes where BLAS does best)."""
    best = 0.0
    for n in (512, 1024):
        a, b = torch.randn(n, n), torch.randn(n, n)
        for _ in range(3):
            a @ b
        start, k = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            a @ b
            k += 1
        best = max(best, 2 * n**3 * k / (time.perf_counter() - start) / 1e9)
    return best


def flops_per_env_step(S, args, obs_dim: int, act_dim: int) -> float:
    """Matmul FLOPs of one env step's updates plus its one action selection."""
    actor = S.Actor(obs_dim, act_dim, args.actor_hidden, args.actor_layers)
    critic = S.QEnsemble(obs_dim, act_dim, args.critic_hidden, args.critic_layers, args.num_qs)
    target = S.QEnsemble(obs_dim, act_dim, args.critic_hidden, args.critic_layers, args.num_qs)
    log_alpha = torch.zeros((), requires_grad=True)
    opts = S.make_optimizers(actor, critic, log_alpha, args)
    n = args.utd * args.batch_size
    batch = {"obs": torch.randn(n, obs_dim), "actions": torch.rand(n, act_dim) * 2 - 1, "rewards": torch.randn(n),
             "next_obs": torch.randn(n, obs_dim), "terminals": torch.zeros(n)}
    with FlopCounterMode(display=False) as counter:
        S.sac_update(actor, critic, target, log_alpha, *opts, batch, args, -float(act_dim))
        actor.act(torch.zeros(obs_dim).numpy(), deterministic=False)
    return counter.get_total_flops()


def time_parts(S, args, obs_dim: int, act_dim: int, repeats: int = 20) -> tuple[float, float]:
    """Milliseconds of one critic update (batch_size) and of one actor + temperature update
    (utd * batch_size), timed apart, to show where an env step's time goes."""
    actor = S.Actor(obs_dim, act_dim, args.actor_hidden, args.actor_layers)
    critic = S.QEnsemble(obs_dim, act_dim, args.critic_hidden, args.critic_layers, args.num_qs)
    target = S.QEnsemble(obs_dim, act_dim, args.critic_hidden, args.critic_layers, args.num_qs)
    log_alpha = torch.zeros((), requires_grad=True)
    actor_opt, critic_opt, alpha_opt = S.make_optimizers(actor, critic, log_alpha, args)
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

    critic_ms = ms(lambda: S.update_critic(critic, target, actor, log_alpha, critic_opt, minibatch, args))
    actor_ms = ms(lambda: S.update_actor_and_alpha(actor, critic, log_alpha, actor_opt, alpha_opt, batch["obs"],
                                                   -float(act_dim)))
    return critic_ms, actor_ms


def calql_step(S, a, obs_dim: int, act_dim: int, repeats: int = 10) -> tuple[float, float]:
    """Matmul FLOPs and milliseconds of one Cal-QL gradient step (critic with the CQL term on
    batch_size transitions, then actor + temperature), the step of phase 1 and of fine-tuning
    at UTD 1, on the locomotion preset."""
    args = S.Args(num_qs=a.num_qs, batch_size=a.batch_size, critic_hidden=a.hidden, actor_hidden=a.hidden)
    S.apply_domain_preset(args, "locomotion")
    actor = S.Actor(obs_dim, act_dim, args.actor_hidden, args.actor_layers)
    critic = S.QEnsemble(obs_dim, act_dim, args.critic_hidden, args.critic_layers, args.num_qs)
    target = S.QEnsemble(obs_dim, act_dim, args.critic_hidden, args.critic_layers, args.num_qs)
    log_alpha, cql_log_alpha = torch.zeros((), requires_grad=True), torch.zeros((), requires_grad=True)
    opts = S.make_optimizers(actor, critic, log_alpha, args)
    cql_opt = torch.optim.Adam([cql_log_alpha])
    n = args.batch_size
    batch = {"obs": torch.randn(n, obs_dim), "actions": torch.rand(n, act_dim) * 2 - 1, "rewards": torch.randn(n),
             "next_obs": torch.randn(n, obs_dim), "terminals": torch.zeros(n), "mc_returns": torch.randn(n)}

    def step():
        S.calql_update(actor, critic, target, log_alpha, cql_log_alpha, opts[0], opts[1], opts[2], cql_opt, batch,
                       args, -float(act_dim))

    with FlopCounterMode(display=False) as counter:
        step()
    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return counter.get_total_flops(), 1000 * (time.perf_counter() - start) / repeats


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
    a = p.parse_args()

    S = importlib.import_module(a.script)
    if a.no_malloc_tuning:
        S.keep_freed_memory = lambda: None
    if hasattr(S, "calql_update"):  # Cal-QL: the gradient step is the unit (offline: no env step)
        env = S.make_env(a.env_id, 0)
        S.keep_freed_memory()
        flops, ms = calql_step(S, a, env.observation_space.shape[0], env.action_space.shape[0])
        peak = matmul_peak()
        achieved = flops / ms / 1e6
        print("| script | config | gradient steps/s | GFLOP/step | GFLOP/s | fp32 matmul peak | share of peak |")
        print("|---|---|---|---|---|---|---|")
        print(f"| {a.script}.py | {a.env_id}, {a.num_qs} critics {a.hidden}x{a.hidden}, batch {a.batch_size}, 3 x 10 CQL "
              f"actions, {torch.get_num_threads()} threads | {1000 / ms:.1f} | {flops / 1e9:.2f} | {achieved:.0f} | "
              f"{peak:.0f} GFLOP/s | {100 * achieved / peak:.0f}% |")
        return
    args = S.Args(env_id=a.env_id, num_qs=a.num_qs, utd=a.utd, batch_size=a.batch_size, critic_hidden=a.hidden,
                  actor_hidden=a.hidden, warmup_steps=1000, total_timesteps=1000 + a.steps,
                  eval_interval=10**9, eval_episodes=1, exp_name="speed")
    env = S.make_env(a.env_id, 0)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    S.keep_freed_memory()  # as main() does, so the FLOP count runs under the same allocator
    flops = flops_per_env_step(S, args, obs_dim, act_dim)
    critic_ms, actor_ms = time_parts(S, args, obs_dim, act_dim)
    with tempfile.TemporaryDirectory() as tmp:  # the run's logs are not kept
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            sps = S.main(args)["sps"]
        finally:
            os.chdir(cwd)
    peak = matmul_peak()
    achieved = sps * flops / 1e9
    print(f"\n| script | config | env-steps/s | GFLOP/step | GFLOP/s | fp32 matmul peak | share of peak |")
    print(f"|---|---|---|---|---|---|---|")
    print(f"| {a.script}.py | {a.env_id}, {a.num_qs} critics {a.hidden}x{a.hidden}, UTD {a.utd}, batch {a.batch_size}, "
          f"{torch.get_num_threads()} threads | {sps:.1f} | {flops / 1e9:.2f} | {achieved:.0f} | {peak:.0f} GFLOP/s | "
          f"{100 * achieved / peak:.0f}% |")
    print(f"\none critic update ({args.batch_size} transitions): {critic_ms:.1f} ms x {args.utd}; one actor + "
          f"temperature update ({args.utd * args.batch_size} transitions): {actor_ms:.1f} ms"
          + ("; malloc tuning OFF" if a.no_malloc_tuning else ""))


if __name__ == "__main__":
    main()
