"""High-UTD ensemble SAC from scratch ("SAC (fast)"), and RLPD when it samples offline data.

This is the online learner of WSRL (Zhou et al., ICLR 2025, Sec. 4 and App. I): soft
actor-critic with an ensemble of 10 LayerNorm critics whose target is the min over 2 members
drawn at random (REDQ), 4 critic updates per environment step (UTD 4) and one actor and
temperature update per step. Run from scratch it is the paper's "SAC (fast)" baseline; with
`--dataset-id X --offline-ratio 0.5` half of every batch comes from an offline Minari dataset,
which is RLPD (Ball et al., 2023), the paper's strongest data-retaining baseline.

The scripts of this repository share their common blocks as identical copies (marked
`# [copy: NAME]` ... `# [end copy]`), so `diff sac_fast.py wsrl_calql_sac.py` shows what WSRL adds.

    python sac_fast.py                                   # CPU-sized run on Hopper-v5
    python sac_fast.py --utd 4 --online-steps 1000000 --eval-interval 10000 --eval-episodes 20  # paper
    python tools/export_dataset.py --save-rollouts 50 --save-dataset-id local/hopper/sac-v0  # a dataset
    python sac_fast.py --dataset-id local/hopper/sac-v0 --offline-ratio 0.5       # RLPD
"""

import math
import os
import time
from dataclasses import dataclass
from typing import Optional

# SUPPORT CODE (datasets, environments, checkpoints, resume points, progress): not the algorithm,
# skip it on a first read. Imported before torch: it sets how idle OpenMP threads wait.
from wsrl_utils import (
    Adam, ReplayBuffer, REWARD_TRANSFORMS, Run, RunArgs, adam_options, apply_domain_preset, autocast, backward,
    check_args, domain_of, env_id_for, env_snapshot, env_step, full_precision, load_offline_data, build_envs,
    reference_scores, restore_env, restore_from, rng_states, sample_batch, save_actor, save_checkpoint, save_curve,
    set_rng_states,
)

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro


@dataclass
class Args(RunArgs):  # + the flags every script shares: --seed, --cuda, --precision, --track, ... (wsrl_utils.py)
    # ---- environment and data -------------------------------------------------------------
    env_id: Optional[str] = None
    """gymnasium environment id; None: the dataset's environment, else Hopper-v5"""
    dataset_id: Optional[str] = None
    """Minari dataset id, e.g. `mujoco/hopper/medium-v0` (downloaded if a network is there) or a
    local one made with `tools/export_dataset.py`; needed when `--offline-ratio` > 0"""
    offline_ratio: float = 0.0
    """share of every batch drawn from the offline dataset: 0 = SAC (fast), 0.5 = RLPD"""

    # ---- algorithm --------------------------------------------------------------------------
    online_steps: int = 15_000
    """environment steps online (CPU default; paper: 1,000,000 with --utd 4)"""
    learning_starts: int = 5_000
    """steps of uniformly random actions before the first update (CleanRL's name; paper and RLPD: 5,000)"""
    buffer_size: int = 1_000_000
    """online replay buffer capacity"""
    batch_size: int = 256
    """transitions per critic update"""
    utd: int = 1
    """update-to-data ratio online: critic updates per environment step (CPU default; paper: 4)"""
    num_qs: int = 10
    """critics in the ensemble (paper: 10; a checkpoint's own number replaces it)"""
    num_min_qs: Optional[int] = None
    """critics drawn (without replacement) whose min is the target (None: RLPD's settings, as
    the paper runs RLPD and JSRL: 1 on antmaze, 2 elsewhere)"""
    critic_hidden: Optional[int] = None
    """width of the critics' hidden layers (None: domain preset, 256; adroit, kitchen 512; a checkpoint's wins)"""
    critic_layers: Optional[int] = None
    """hidden layers of each critic (None: domain preset, locomotion 2, antmaze 4, adroit/kitchen 3; a checkpoint's wins)"""
    actor_hidden: Optional[int] = None
    """width of the actor's hidden layers (None: domain preset, 256; adroit, kitchen 512; a checkpoint's wins)"""
    actor_layers: Optional[int] = None
    """hidden layers of the actor (None: domain preset, 2; kitchen 3; a checkpoint's wins)"""
    last_hidden_init_scale: Optional[float] = None
    """orthogonal-init gain of the last hidden layer of actor and critics (None: domain preset,
    as the official code: 1e-2 in locomotion, antmaze and adroit; sqrt 2 = 1.414 on kitchen)"""
    state_dependent_std: Optional[bool] = None
    """the policy's std: a head on the state (True) or one learned number per action dimension (False)
    (None: domain preset, as the official code: False on antmaze, True elsewhere; a checkpoint's wins)"""
    layer_norm: Optional[bool] = None
    """LayerNorm after every hidden Dense of actor and critics (None: on, as WSRL; a checkpoint's wins).
    `--layer-norm False --num-qs 2`: the networks of the original IQL, CQL, Cal-QL (the paper's Fig. 7)"""
    actor_lr: float = 1e-4
    """actor learning rate"""
    critic_lr: float = 3e-4
    """critic learning rate"""
    temp_lr: float = 1e-4
    """temperature learning rate"""
    gamma: float = 0.99
    """discount factor"""
    tau: float = 0.005
    """target smoothing coefficient (after every critic update)"""
    init_temperature: float = 1.0
    """initial entropy temperature alpha (for fresh networks; a checkpoint brings its own)"""
    target_entropy: Optional[float] = None
    """entropy the temperature aims for; default -|A|"""
    backup_entropy: bool = False
    """add the entropy bonus -alpha * log pi(a'|s') to the TD target (off in the paper)"""
    max_target_backup: Optional[bool] = None
    """TD target from the best of 10 sampled next actions (None: on for antmaze only, as the
    paper's SAC and RLPD there)"""
    eval_interval: int = 2_500
    """evaluate the deterministic policy every this many online environment steps"""
    eval_episodes: int = 5
    """episodes per evaluation (paper: 20)"""
    stop_at_return: Optional[float] = None
    """stop at the first evaluation whose mean return reaches this (how D4RL made its "medium"
    behaviour policies: training stopped part-way); that evaluation's actor is the one kept"""
    save_actors: bool = False
    """save the actor alone at every evaluation to runs/{run_name}/actors/step_{N}.pt (a few
    hundred KB each): behaviour policies for `tools/make_datasets.py`"""

    # ---- generic --------------------------------------------------------------------------
    exp_name: str = "sac_fast"
    """name of this experiment (used in the run folder name)"""
    save_model: bool = False
    """save a checkpoint (actor, critics, target, temperature, optimizer states, args) at the end
    of the run, or when it is interrupted, to runs/{run_name}/{exp_name}.pt"""
    resume: Optional[str] = None
    """continue the run in this folder (runs/...) exactly where its last resume point left it;
    every other flag is taken from that run"""
    resume_interval: int = 10_000
    """write a resume point (networks, optimizers, replay buffer, random states, counters) to
    runs/{run_name}/resume.pt at the first episode end after every this many steps; 0: never"""


# =================================================================================================
# THE ALGORITHM: the networks, the losses and updates, evaluation and diagnostics, then `main`,
# which runs them in the order of the paper. Read these with the paper open. (The paper's settings
# per domain are DOMAIN_PRESETS in wsrl_utils.py, applied before anything is built.)
# =================================================================================================


# [copy: networks]
# ---------------------------------------------------------------------------------------------
# Networks: a batched critic ensemble (no Python loop over members); the actor comes next
# ---------------------------------------------------------------------------------------------
# Initialisation as in the official WSRL code: orthogonal weights with gain sqrt(2) (the gain
# that keeps a ReLU layer's activations at unit scale) and zero biases, everywhere, except the
# LAST HIDDEN layer of actor and critic, which gets the gain `last_hidden_scale` (official: 1e-2
# in locomotion, antmaze and adroit, sqrt(2) on kitchen). That layer is followed by LayerNorm, so
# a small gain does not shrink what it outputs; it makes its weights small, so that early
# updates change them (and the features) faster in relative terms.
ORTHOGONAL_GAIN = math.sqrt(2.0)


LAYER_NORM_EPS = 1e-6  # flax's default, which the official code uses (PyTorch's is 1e-5)


def orthogonal_linear(in_features: int, out_features: int, gain: float) -> nn.Linear:
    layer = nn.Linear(in_features, out_features)
    nn.init.orthogonal_(layer.weight, gain=gain)
    nn.init.zeros_(layer.bias)
    return layer


class VectorizedLinear(nn.Module):
    """E independent linear layers applied at once: (E, B, in) -> (E, B, out) with one batched
    matmul. Each member gets its own orthogonal initialisation."""

    def __init__(self, in_features: int, out_features: int, ensemble_size: int, gain: float = ORTHOGONAL_GAIN):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(ensemble_size, in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(ensemble_size, 1, out_features))
        for member_weight in self.weight.data:  # (in, out) each, orthogonal columns (or rows)
            nn.init.orthogonal_(member_weight, gain=gain)

    def forward(self, x: torch.Tensor, idx: Optional[torch.Tensor] = None) -> torch.Tensor:
        w, b = (self.weight, self.bias) if idx is None else (self.weight[idx], self.bias[idx])
        return torch.baddbmm(b, x, w)  # b + x @ w, batched over members


class VectorizedLayerNorm(nn.Module):
    """LayerNorm over features with a separate scale and shift for each ensemble member."""

    def __init__(self, features: int, ensemble_size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ensemble_size, 1, features))
        self.bias = nn.Parameter(torch.zeros(ensemble_size, 1, features))

    def forward(self, x: torch.Tensor, idx: Optional[torch.Tensor] = None) -> torch.Tensor:
        w, b = (self.weight, self.bias) if idx is None else (self.weight[idx], self.bias[idx])
        return torch.addcmul(b, F.layer_norm(x, x.shape[-1:], eps=LAYER_NORM_EPS), w)  # b + norm(x) * w in one pass


class QEnsemble(nn.Module):
    """num_qs critics Q_i(s, a), each Dense -> LayerNorm -> ReLU per hidden layer, then its OWN
    output head. (The official code shares one head across the trunks; an ensemble of
    independent Q-functions is what the paper describes, so we do not.) layer_norm=False: none."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int, layers: int, num_qs: int,
                 last_hidden_scale: float = ORTHOGONAL_GAIN, layer_norm: bool = True):
        super().__init__()
        self.num_qs = num_qs
        sizes = [obs_dim + act_dim] + [hidden] * layers
        gains = [ORTHOGONAL_GAIN] * (layers - 1) + [last_hidden_scale]
        self.linears = nn.ModuleList(VectorizedLinear(i, o, num_qs, g) for i, o, g in zip(sizes[:-1], sizes[1:], gains))
        self.norms = nn.ModuleList(VectorizedLayerNorm(hidden, num_qs) for _ in range(layers) if layer_norm)
        self.head = VectorizedLinear(hidden, 1, num_qs)

    def forward(self, obs: torch.Tensor, action: torch.Tensor, idx: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Q-values (E, B) of all members, or only of the members in `idx` (the target needs 2
        of 10: computing only those saves 80% of the target's cost)."""
        # Every member sees the same (s, a); the members differ only by their weights, so the
        # whole ensemble is a few batched matmuls (E, B, in) x (E, in, out).
        x = torch.cat([obs, action], dim=-1)  # (B, obs+act)
        n = self.num_qs if idx is None else len(idx)
        x = x.unsqueeze(0).expand(n, *x.shape)  # (E, B, obs+act), a view: no copy
        for i, linear in enumerate(self.linears):
            x = linear(x, idx)
            x = F.relu(self.norms[i](x, idx) if self.norms else x, inplace=True)
        return full_precision(self.head, x, idx).squeeze(-1)  # (E, B)


# [end copy]


# [copy: sac-actor]
# ---------------------------------------------------------------------------------------------
# The tanh-Gaussian actor of SAC (every script but td3c.py)
# ---------------------------------------------------------------------------------------------
LOG_STD_MIN, LOG_STD_MAX = math.log(1e-5), math.log(10.0)  # std clipped to [1e-5, 10] (official code)


class Actor(nn.Module):
    """tanh-squashed diagonal Gaussian policy. Its trunk is Dense -> LayerNorm -> ReLU per hidden
    layer, like the critics' (paper Sec. 4: "layer normalization in both the actor and the
    critic"; official code: use_layer_norm=True for the policy too). The std is a second head on
    the trunk (state-dependent, the default), or, with state_dependent_std=False, one learned
    log std per action dimension that starts at 0 (std 1): the official antmaze configs
    (std_parameterization="uniform"). layer_norm=False: no LayerNorm (the original IQL, CQL, Cal-QL)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int, layers: int,
                 last_hidden_scale: float = ORTHOGONAL_GAIN, state_dependent_std: bool = True, layer_norm: bool = True):
        super().__init__()
        sizes = [obs_dim] + [hidden] * layers
        gains = [ORTHOGONAL_GAIN] * (layers - 1) + [last_hidden_scale]
        self.trunk = nn.Sequential(*[m for i, o, g in zip(sizes[:-1], sizes[1:], gains) for m in (
            orthogonal_linear(i, o, g), *([nn.LayerNorm(o, eps=LAYER_NORM_EPS)] if layer_norm else []), nn.ReLU())])
        self.mean = orthogonal_linear(hidden, act_dim, ORTHOGONAL_GAIN)
        self.state_dependent_std = state_dependent_std
        self.log_std = (orthogonal_linear(hidden, act_dim, ORTHOGONAL_GAIN) if state_dependent_std
                        else nn.Parameter(torch.zeros(act_dim)))

    def forward(self, obs: torch.Tensor):
        h = self.trunk(obs)
        mean = full_precision(self.mean, h)
        log_std = full_precision(self.log_std, h) if self.state_dependent_std else self.log_std.expand_as(mean)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)  # clamping log std = clipping std

    def sample(self, obs: torch.Tensor):
        """a = tanh(u), u ~ N(mean, std) (reparameterised); returns a (B, A) and log pi(a|s) (B,)."""
        mean, log_std = self(obs)
        # reparameterisation trick: the noise is an input, so gradients reach mean and std
        u = mean + log_std.exp() * torch.randn_like(mean)
        return torch.tanh(u), tanh_gaussian_log_prob(u, mean, log_std)

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.mean.weight.device).unsqueeze(0)
        action = torch.tanh(self(obs_t)[0]) if deterministic else self.sample(obs_t)[0]  # eval: tanh(mean)
        return action[0].cpu().numpy()


def tanh_gaussian_log_prob(u: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log pi(tanh(u)) = log N(u; mean, std) - sum log(1 - tanh(u)^2), with the stable identity
    log(1 - tanh(u)^2) = 2 * (log 2 - u - softplus(-2u))."""
    gauss = -0.5 * ((u - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
    return (gauss - 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)


# [end copy]


# [copy: sac-core]
# ---------------------------------------------------------------------------------------------
# SAC pieces every SAC learner shares: target, actor + temperature step, the agent and its optimizers
# (shapes: E ensemble members, B batch, A action dims)
# ---------------------------------------------------------------------------------------------
BACKUP_ACTIONS = 10  # next actions tried per state by --max-target-backup (CQL; SAC on antmaze)


def draw_members(num_qs: int, k: int, device: torch.device) -> torch.Tensor:
    """k of the num_qs ensemble members, drawn without replacement. On a GPU the draw happens
    there (argsort of uniform noise: a uniformly random subset too), so that a CUDA graph can
    replay it (--cuda-graphs); on the CPU, torch.randperm."""
    if device.type == "cuda":
        return torch.rand(num_qs, device=device).argsort()[:k]
    if k == num_qs and torch.compiler.is_compiling():  # all of them (in any order: a min or a mean follows);
        return torch.arange(num_qs)  # --compile: torch 2.13's Inductor fails on x[randperm(len(x))]
    return torch.randperm(num_qs)[:k]


@torch.no_grad()
def td_target(critic_target, actor, alpha_param, batch: dict, args, max_backup: bool,
              noise: Optional[tuple] = None) -> torch.Tensor:
    """r + gamma * (1 - terminal) * min over `num_min_qs` random target members of Q(s', a'),
    a' ~ pi(s'). A truncated transition has terminal = 0, so it bootstraps. With `max_backup`
    (Cal-QL always; SAC with --max-target-backup), a' is the best of BACKUP_ACTIONS sampled next
    actions under that min. With `noise` = (std, clip), SO2's perturbed value update: a' + eps,
    eps = clip(N(0, std^2), -clip, clip), kept in the action box [-1, 1]."""
    next_obs = batch["next_obs"]  # (B, obs)
    if max_backup:  # sparse rewards: back up the best next action, not a random one
        next_obs = next_obs.repeat_interleave(BACKUP_ACTIONS, dim=0)  # (B * 10, obs)
    next_actions, next_log_pi = actor.sample(next_obs)  # (B, A), (B,)  [or B * 10]
    if noise is not None:  # (TD3's target smoothing, on SAC's sampled action: the value of a
        std, clip = noise  # small neighbourhood of a', not of a' alone, is backed up)
        next_actions = (next_actions + (torch.randn_like(next_actions) * std).clamp(-clip, clip)).clamp(-1.0, 1.0)
    # REDQ: a fresh random subset of target critics at every update, drawn WITHOUT replacement
    # (the official code draws with replacement; docs/algorithms.md §9).
    idx = draw_members(args.num_qs, args.num_min_qs, alpha_param.device)
    next_q = critic_target(next_obs, next_actions, idx).min(dim=0).values  # (B,)  [or B * 10]
    if args.backup_entropy:  # off in the paper; max_backup: from each candidate, before the max (official SAC)
        next_q = next_q - F.softplus(alpha_param) * next_log_pi
    if max_backup:
        next_q = next_q.view(-1, BACKUP_ACTIONS).max(dim=1).values  # (B,)
    return batch["rewards"] + args.gamma * (1.0 - batch["terminals"]) * next_q  # (B,)


def update_actor_and_alpha(actor, critic, alpha_param, actor_opt, alpha_opt, batch: dict, args,
                           target_entropy: float, max_backup: bool) -> dict:
    """One actor step and one temperature step on the whole (utd * batch) sample (`max_backup`:
    as the learner's td_target)."""
    # N = utd * batch_size: the actor sees every transition the critics were trained on this step
    obs = batch["obs"]  # (N, obs)
    # The temperature's entropy estimate, taken as the official code does: from FRESH actions at
    # the next states (10 per state with `max_backup`, as the target samples them), drawn
    # before the actor moves. (CleanRL reuses the actor step's log pi at s instead.)
    with torch.no_grad():
        next_obs = batch["next_obs"]
        if max_backup:
            next_obs = next_obs.repeat_interleave(BACKUP_ACTIONS, dim=0)  # (N * 10, obs)
        entropy = -actor.sample(next_obs)[1].mean()
    actions, log_pi = actor.sample(obs)  # (N, A), (N,)
    q = critic(obs, actions).min(dim=0).values  # min over the WHOLE ensemble (official code), (N,)
    alpha = F.softplus(alpha_param).detach()
    # maximise Q - alpha * log pi: high value, but keep the policy's entropy (SAC)
    actor_loss = (alpha * log_pi - q).mean()
    actor_opt.zero_grad(set_to_none=True)
    # Only the actor's weights need gradients: asking for them alone skips the critic weight
    # gradients (a third of the backward cost) and leaves the critic's .grad untouched.
    backward(actor_loss, inputs=list(actor.parameters()))
    actor_opt.step()
    # Temperature, alpha = softplus(alpha_param) (official code; CleanRL uses exp): minimising
    # alpha * (H - H_target) makes alpha grow while the entropy H is below target, shrink above.
    alpha_loss = F.softplus(alpha_param) * (entropy - target_entropy)
    alpha_opt.zero_grad(set_to_none=True)
    backward(alpha_loss)
    alpha_opt.step()
    return {"actor_loss": actor_loss.detach(), "alpha_loss": alpha_loss.detach(), "entropy": entropy,
            "alpha": F.softplus(alpha_param.detach())}


def make_sac_agent(obs_dim: int, act_dim: int, args, device: torch.device) -> tuple:
    """The SAC learner: the tanh-Gaussian actor, the critic ensemble, its target (an exact copy
    at the start), the temperature alpha = softplus(alpha_param) (so that it stays positive), and
    their Adam optimizers."""
    actor = Actor(obs_dim, act_dim, args.actor_hidden, args.actor_layers, args.last_hidden_init_scale,
                  args.state_dependent_std, args.layer_norm).to(device)
    critic, critic_target = (QEnsemble(obs_dim, act_dim, args.critic_hidden, args.critic_layers, args.num_qs,
                                       args.last_hidden_init_scale, args.layer_norm).to(device) for _ in range(2))
    critic_target.load_state_dict(critic.state_dict())  # (built twice, not deep-copied: same random draws, same runs)
    alpha_param = torch.tensor(inverse_softplus(args.init_temperature), device=device, requires_grad=True)
    return (actor, critic, critic_target, alpha_param, *make_optimizers(actor, critic, alpha_param, args))


def make_optimizers(actor, critic, alpha_param, args):
    """Adam, no weight decay, no grad clipping; fused kernels (one per step, not one per tensor).
    (`Adam` is torch's, from wsrl_utils only so that --compile can trace its step.)"""
    fused = adam_options(alpha_param.device, args)
    return (Adam(actor.parameters(), lr=args.actor_lr, **fused),
            Adam(critic.parameters(), lr=args.critic_lr, **fused),
            Adam([alpha_param], lr=args.temp_lr, **fused))


# [end copy]


# [copy: train-utils]
# ---------------------------------------------------------------------------------------------
# The target networks' Polyak update, and the softplus parameterisation of the temperature
# ---------------------------------------------------------------------------------------------
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    with torch.no_grad():
        torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)


def inverse_softplus(x: float) -> float:
    """The parameter p with softplus(p) = log(1 + e^p) = x: a temperature starts at x this way."""
    return math.log(math.expm1(x))


# [end copy]


# [copy: sac-update]
# ---------------------------------------------------------------------------------------------
# SAC's critic step and the high-UTD step of one environment step (the online learner)
# ---------------------------------------------------------------------------------------------
def update_critic(critic, critic_target, actor, alpha_param, critic_opt, batch: dict, args,
                  noise: Optional[tuple] = None) -> dict:
    """One TD step on all members of the ensemble, then the target update (`noise`: SO2's)."""
    target_q = td_target(critic_target, actor, alpha_param, batch, args, args.max_target_backup, noise)  # (B,)
    q = critic(batch["obs"], batch["actions"])  # (E, B)
    # Every member regresses to the SAME target (built from 2 of them): the ensemble's spread
    # comes from independent initialisations. Mean over members and batch (official code).
    loss = F.mse_loss(q, target_q.expand_as(q))
    critic_opt.zero_grad(set_to_none=True)
    backward(loss)
    critic_opt.step()
    soft_update(critic_target, critic, args.tau)  # after every critic step
    return {"qf_loss": loss.detach(), "qf_mean": q.detach().mean()}


def sac_update(actor, critic, critic_target, alpha_param, actor_opt, critic_opt, alpha_opt, batch: dict,
               args, target_entropy: float, update_actor: bool = True, noise: Optional[tuple] = None) -> dict:
    """The high-UTD step of one env step: `utd` critic updates on consecutive minibatches of the
    sample (target update after each), then ONE actor + temperature update on all of it
    (skipped when `update_actor` is False: WSRL's policy-freeze ablation, App. F). `noise`:
    SO2's perturbed value update (td_target)."""
    # High UTD (App. I): several critic steps per env step learn more from each transition; the
    # ensemble and LayerNorm are what keep these many updates from over-estimating (RLPD).
    with autocast(args, batch["obs"].device):  # --precision bf16 (a no-op in fp32)
        for k in range(len(batch["rewards"]) // args.batch_size):  # `utd` minibatches
            minibatch = {key: v[k * args.batch_size:(k + 1) * args.batch_size] for key, v in batch.items()}
            info = update_critic(critic, critic_target, actor, alpha_param, critic_opt, minibatch, args, noise)
        if update_actor:
            info.update(update_actor_and_alpha(actor, critic, alpha_param, actor_opt, alpha_opt, batch, args, target_entropy,
                                               args.max_target_backup))
    return info


# [end copy]


# [copy: evaluate]
# ---------------------------------------------------------------------------------------------
# Evaluation: the deterministic policy, on its own environment
# ---------------------------------------------------------------------------------------------
def evaluate(actor: nn.Module, env: gym.Env, episodes: int, ref_scores) -> tuple[float, Optional[float], Optional[float]]:
    """Mean return of the deterministic policy tanh(mean) (untransformed rewards), its normalised
    score and its success rate. Sparse domains (their env reports info["success"]): the success
    rate (kitchen: the share of the four tasks done) and a score of 100 x that rate, as the paper
    reports them; elsewhere no success rate and the score 100 * (R - random) / (expert - random)
    when reference scores are known."""
    returns, successes = [], []
    for _ in range(episodes):
        obs, _ = env.reset()
        done, total = False, 0.0
        while not done:
            obs, reward, terminated, truncated, info = env.step(actor.act(obs, deterministic=True))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
        if "success" in info:  # at the episode's end
            successes.append(float(info["success"]))
    mean = float(np.mean(returns))
    if successes:
        success = float(np.mean(successes))
        return mean, 100.0 * success, success
    score = None if ref_scores is None else 100.0 * (mean - ref_scores[0]) / (ref_scores[1] - ref_scores[0])
    return mean, score, None


# [end copy]




def main(args: Args) -> dict:
    # ===== SETUP: flags, data, environments, logs (support code in wsrl_utils.py: skim it) =========
    run = Run(args, "sac_fast.py")  # --resume: the run's own settings and state
    args, device = run.args, run.device
    domain = domain_of(args.dataset_id or args.env_id or "")
    # the network sizes of the domain (the paper's RLPD and SAC run with WSRL's networks there)
    apply_domain_preset(args, domain)
    if args.num_min_qs is None:  # the paper's RLPD on antmaze: the min over ONE sub-sampled critic
        args.num_min_qs = 1 if domain in ("antmaze", "pointmaze") else 2
    if args.max_target_backup is None:  # the paper's SAC on antmaze backs up the best of 10 next actions
        args.max_target_backup = domain in ("antmaze", "pointmaze")
    check_args(args, {"--online-steps": (args.online_steps, 1), "--learning-starts": (args.learning_starts, 0)})
    if args.learning_starts >= args.online_steps:
        raise SystemExit(f"error: --online-steps {args.online_steps:,} is not above --learning-starts "
                         f"{args.learning_starts:,} (random actions, no update): the agent would never learn. "
                         "Raise --online-steps or lower --learning-starts.")
    if args.dataset_id and args.offline_ratio == 0:  # it would only name the environment: say so, not ignore it
        raise SystemExit(f"error: --dataset-id {args.dataset_id} is sampled only with --offline-ratio > 0 (RLPD: "
                         "--offline-ratio 0.5). For SAC without offline data, pass --env-id instead.")
    if args.offline_ratio > 0 and not args.dataset_id:
        raise SystemExit("error: --offline-ratio > 0 needs --dataset-id (RLPD samples offline data).")
    offline_data, metadata = load_offline_data(args.dataset_id, domain) if args.dataset_id else (None, {})
    # the dataset knows which environment produced it; --env-id overrides
    env_id = env_id_for(args.dataset_id, metadata, args.env_id) if args.dataset_id else (args.env_id or "Hopper-v5")
    # online rewards get the same transform as the offline data, so both live on one scale
    reward_transform = REWARD_TRANSFORMS[domain_of(args.dataset_id or env_id)]
    gen = run.seed()  # the replay sampler's random stream
    env, eval_env, obs_dim, act_dim = build_envs(env_id, args.seed, metadata, data=offline_data, dataset_id=args.dataset_id)
    run.open_logs(env_id, metadata=metadata)
    ref_scores, summary = reference_scores(env_id, metadata), run.summary

    # ===== THE AGENT: actor, critic ensemble and its target, temperature ===========================
    actor, critic, critic_target, alpha_param, actor_opt, critic_opt, alpha_opt = make_sac_agent(obs_dim, act_dim, args, device)
    learner = dict(actor=actor, critic=critic, critic_target=critic_target, alpha_param=alpha_param, actor_opt=actor_opt,
                   critic_opt=critic_opt, alpha_opt=alpha_opt)  # (what checkpoints and resume points hold)
    target_entropy = -float(act_dim) if args.target_entropy is None else args.target_entropy

    def sac_step(batch: dict) -> dict:  # one high-UTD step: `utd` critic updates, then one actor update
        return sac_update(**learner, batch=batch, args=args, target_entropy=target_entropy)

    sac_step = run.graphs.wrap(sac_step)  # --compile: compiled whole; --cuda-graphs: recorded once, then replayed
    # SAC (fast) learns from its own buffer alone; RLPD also keeps the offline data in a second
    # buffer and draws `offline_ratio` of every minibatch from it (symmetric sampling)
    rb = ReplayBuffer(obs_dim, act_dim, args.buffer_size, device)
    offline_rb = ReplayBuffer.from_arrays(offline_data, device) if offline_data is not None and args.offline_ratio > 0 else None
    del offline_data  # what RLPD needs now lives in offline_rb
    print(f"SAC (fast){' + offline data (RLPD)' if offline_rb else ''} on {env_id} | {device}, {args.precision} | "
          f"{args.num_qs} critics, min of {args.num_min_qs}, UTD {args.utd}, batch {args.batch_size} | "
          f"{args.online_steps:,} steps ({args.learning_starts:,} random) | logs: {run.run_dir}")

    # ===== TRAINING: random actions until --learning-starts, then one env step + `utd` critic updates per step ==========
    obs, _ = env.reset(seed=args.seed)
    updates_start, step, last_return, info = None, 0, float("nan"), {}
    if run.start(eval_env) is not None:  # resumed: every weight, moment, transition, counter and random stream
        restore_from(run.resume, **learner, buffer=rb)
        step, last_return, obs = run.resume["step"], run.resume["last_return"], run.resume["obs"]
        obs = restore_env(env, run.resume["env"], obs)
        set_rng_states(run.resume["rng"], gen)  # last: nothing may draw from them after this
    with run.stoppable():
        for step in run.steps(step + 1, args.online_steps):
            if step <= args.learning_starts:
                action = env.action_space.sample()  # uniform random actions fill the buffer first
            else:
                action = actor.act(obs, deterministic=False)
            (o, a, r, next_o, terminated, ended), obs, episode = env_step(env, obs, action)
            # `terminated` decides bootstrapping; `ended` (terminated or truncated) only marks
            # episode boundaries, so the buffer can be exported as episodes
            rb.add(o, a, reward_transform(r), next_o, terminated, ended)
            last_return = run.log_episode(episode, step, last_return)

            # one high-UTD update per env step once the random actions have filled the buffer
            if step > args.learning_starts:
                updates_start = updates_start or (time.time(), step)
                info = sac_step(sample_batch(rb, offline_rb, args.utd, args.batch_size, args.offline_ratio, gen))
                if summary["first_losses"] is None:
                    summary["first_losses"] = {k: float(v) for k, v in info.items()}
                if step % 100 == 0:
                    run.log_losses("losses/", info, step, "online")

            # evaluation uses its own env, so the training episode in progress is not disturbed
            if step % args.eval_interval == 0 or step == args.online_steps:
                ret = run.log_eval("", step, evaluate(actor, eval_env, args.eval_episodes, ref_scores), summary["evals"])
                if args.save_actors:
                    summary["actor"] = save_actor(run.run_dir, actor, args, env_id, step, ret)
                if args.stop_at_return is not None and ret >= args.stop_at_return:
                    # learning is not monotone: keep the policy of THIS evaluation, not a later one
                    print(f"eval return {ret:.1f} >= --stop-at-return {args.stop_at_return:g} at step {step:,}: stopping")
                    summary["stopped_at"] = step
                    break
            if step % 1000 == 0 or step == args.online_steps:
                summary["sps"] = run.progress(step, args.online_steps, run.start_time, updates_start, last_return,
                                              summary["evals"], info)
            if run.resume_point_due(step, ended):
                run.save_resume_point(step, **learner, buffer=rb, last_return=last_return, obs=obs, env=env_snapshot(env),
                                      eval_env=env_snapshot(eval_env, simulator=False), rng=rng_states(gen))

    # ===== SAVE =================================================================================
    if args.save_model:
        path = summary["checkpoint"] = os.path.join(run.run_dir, f"{args.exp_name}.pt")
        save_checkpoint(path, **learner, args=args, step=step, env_id=env_id, complete=step == args.online_steps,
                        planned_steps=args.online_steps, dataset=run.dataset)
    if summary["evals"]:
        save_curve(os.path.join(run.run_dir, "eval_curve.png"), summary["evals"], f"{args.exp_name} on {env_id}",
                   {"updates start": args.learning_starts})
    run.finish(step, env, eval_env)
    # what tools/export_dataset.py writes as a Minari dataset (the buffer, or the policy's episodes)
    summary.update(buffer=rb, policy=actor, env_id=env_id, steps=step)
    return summary


if __name__ == "__main__":
    main(tyro.cli(Args))
