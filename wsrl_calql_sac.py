"""WSRL (Warm Start RL): pre-train with Cal-QL, DISCARD the offline data, warm up with the frozen
pre-trained policy, then fine-tune with high-UTD ensemble SAC.

Algorithm 1 of "Efficient Online RL Fine-Tuning Need Not Retain Offline Data" (Zhou et al.,
ICLR 2025; docs/algorithms.md §2). Offline methods fine-tuned without their data collapse at the
switch: the first online batches are nothing like the data the critic was fitted on, so its
values drift and the policy forgets (Sec. 3). WSRL keeps the pre-trained networks but not the
data, fills a fresh buffer with a few thousand steps of the FROZEN pre-trained policy (the
"warmup", which stands in for the missing offline data), then runs plain SAC (no pessimism) at
a high update-to-data ratio. Every ablation of the paper is a flag; `analysis/` in tensorboard
shows why warmup matters (Fig. 4, 8, 11).

    bash demo.sh                                          # makes a dataset if needed, then the demo (CPU)
    python wsrl_calql_sac.py --dataset-id local/hopper/replay-30k-v0          # CPU-sized run
    python wsrl_calql_sac.py --pretrained-checkpoint runs/RUN/calql_offline_pretrained.pt --warmup-steps 0
    python wsrl_calql_sac.py --pretrained-checkpoint CKPT --warmup-steps 0 --online-algo so2   # the SO2 baseline
    python wsrl_calql_sac.py --dataset-id mujoco/hopper/medium-v0 --offline-steps 250000 \\
        --online-steps 1000000 --utd 4 --eval-interval 10000 --eval-episodes 20   # paper scale (GPU)
"""

import copy
import math
import os
import time
from dataclasses import dataclass
from typing import Annotated, Literal, Optional

# SUPPORT CODE (datasets, environments, checkpoints, resume points, progress): not the algorithm,
# skip it on a first read. Imported before torch: it sets how idle OpenMP threads wait.
from wsrl_utils import (
    Adam, ReplayBuffer, REWARD_TRANSFORMS, Run, RunArgs, adam_options, autocast, backward, check_args, env_snapshot,
    env_step, full_precision, heldout_split, load_pretrained, load_task, build_envs, offline_per_batch,
    reference_scores, restore, restore_env, restore_from, rng_states, sample_batch, save_checkpoint, save_curve,
    set_rng_states, to_batch,
)

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro


@dataclass
class Args(RunArgs):  # + the flags every script shares: --seed, --cuda, --precision, --track, ... (wsrl_utils.py)
    # ---- phases -----------------------------------------------------------------------------
    pretrained_checkpoint: Optional[str] = None
    """start from this checkpoint (a *_pretrained.pt of calql_offline.py or a WSRL script, or any
    script's --save-model) and skip phase 1"""
    offline_steps: int = 5_000
    """phase 1: Cal-QL gradient steps (CPU default; paper: 250k locomotion and kitchen, 1M
    antmaze, 20k adroit)"""
    online_steps: int = 15_000
    """environment steps online, warmup included (CPU default)"""
    warmup_steps: int = 5_000
    """phase 2: steps acting with the frozen pre-trained policy before the first update (paper:
    5,000; 0 = the no-warmup ablation)"""
    warmup_policy: Literal["pretrained", "random", "dataset"] = "pretrained"
    """who fills the buffer during warmup: the frozen pre-trained policy (WSRL), uniform random
    actions, or `dataset`: no warmup steps, the buffer starts with --warmup-steps offline
    transitions (App. K)"""
    init_policy: bool = True
    """fine-tune the pre-trained actor (`--no-init-policy`: a fresh one, App. H, Fig. 13)"""
    init_critic: bool = True
    """fine-tune the pre-trained critics and target (`--no-init-critic`: fresh ones, Fig. 12)"""
    policy_freeze_steps: int = 0
    """after warmup, train only the critic for this many steps (App. F; SAC only)"""
    online_algo: Literal["sac", "calql", "so2"] = "sac"
    """phase 3 learner: SAC (WSRL), Cal-QL with its CQL term (Fig. 12, right), or SO2's SAC with
    perturbed value updates (the paper's SO2 baseline, with --warmup-steps 0)"""
    target_noise: Annotated[float, tyro.conf.arg(help_behavior_hint="(default: sqrt 0.3 = 0.548)")] = math.sqrt(0.3)
    """std of the target smoothing noise on the next action, as TD3's (--online-algo so2 only; SO2's
    paper: variance 0.3)"""
    target_noise_clip: float = 0.6
    """the target smoothing noise is clipped to [-clip, clip] (--online-algo so2 only; SO2's paper: 0.6)"""
    offline_eval_interval: int = 1_000
    """evaluate every this many offline gradient steps"""
    eval_interval: int = 2_500
    """evaluate the deterministic policy every this many online environment steps"""
    eval_episodes: int = 5
    """episodes per evaluation (paper: 20)"""
    analysis_interval: int = 250
    """log analysis/ (on held-out offline data and on online data; docs/metrics.md) every this many
    online steps"""
    analysis_actions: int = 20
    """actions per state for the KL between softmax(Q_pre) and softmax(Q): half from pi_pre, half from pi"""

    # ---- environment and data -------------------------------------------------------------
    env_id: Optional[str] = None
    """gymnasium environment id; None: the dataset's environment"""
    dataset_id: Optional[str] = None
    """Minari dataset id: a local one (made with `tools/export_dataset.py`) or one to
    download; None: the --pretrained-checkpoint's dataset, else mujoco/hopper/medium-v0"""
    domain: Literal["auto", "locomotion", "antmaze", "pointmaze", "kitchen", "adroit"] = "auto"
    """benchmark domain; sets the reward transform and the presets below (auto: from the dataset id)"""
    offline_ratio: float = 0.0
    """share of every online batch drawn from the offline data: 0 = WSRL (the data is
    discarded); > 0 keeps it (ablation, App. L)"""
    heldout_size: int = 1000
    """offline transitions kept apart, never trained on, for the diagnostics on offline states
    (analysis/); at most a tenth of the dataset"""

    # ---- algorithm --------------------------------------------------------------------------
    buffer_size: int = 1_000_000
    """online replay buffer capacity"""
    batch_size: int = 256
    """transitions per critic update"""
    utd: int = 1
    """update-to-data ratio online: critic updates per environment step (CPU default; paper: 4)"""
    num_qs: int = 10
    """critics in the ensemble (paper: 10; a checkpoint's own number replaces it)"""
    num_min_qs: int = 2
    """critics drawn (without replacement) for the target min and for the CQL term (paper: 2)"""
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
    """online SAC's TD target from the best of 10 sampled next actions (None: on for antmaze
    only, App. I); Cal-QL always uses it"""
    calql: bool = True
    """Cal-QL's lower bound on the policy actions' Q-values; `--no-calql` gives plain CQL"""
    cql_alpha: Optional[float] = None
    """weight of the CQL term (None: domain preset: locomotion 5, kitchen 5, adroit 1; unused with
    --cql-lagrange, where the learned multiplier is the weight)"""
    cql_n_actions: int = 10
    """actions per state of each kind (random, pi(s), pi(s')) in the CQL logsumexp"""
    cql_importance_sample: Optional[bool] = None
    """divide each sampled action's exp(Q) by its density (None: domain preset: off on kitchen)"""
    cql_lagrange: Optional[bool] = None
    """learn the CQL weight as a Lagrange multiplier that holds the gap at --cql-target-gap
    (None: domain preset: on for antmaze)"""
    cql_target_gap: float = 0.8
    """with --cql-lagrange: the CQL gap the multiplier aims for (antmaze: 0.8)"""
    cql_lagrange_lr: float = 3e-4
    """learning rate of the Lagrange multiplier"""

    # ---- generic --------------------------------------------------------------------------
    exp_name: str = "wsrl_calql_sac"
    """name of this experiment (used in the run folder name)"""
    save_model: bool = False
    """also save the FINE-TUNED checkpoint at the end to runs/{run_name}/{exp_name}.pt (the
    pre-trained one, runs/{run_name}/{exp_name}_pretrained.pt, is always saved)"""
    resume: Optional[str] = None
    """continue the run in this folder (runs/...) exactly where its last resume point left it;
    every other flag is taken from that run"""
    resume_interval: int = 10_000
    """write a resume point (networks, optimizers, buffers, random states, counters) to
    runs/{run_name}/resume.pt every this many offline steps, and online at the first episode end
    after every this many steps; 0: never"""


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


# [copy: calql-update]
# ---------------------------------------------------------------------------------------------
# The Cal-QL / CQL critic step (docs/algorithms.md §3). E = members, B = batch, N = cql_n_actions.
# ---------------------------------------------------------------------------------------------
def cql_gap(q_data: torch.Tensor, q_rand: torch.Tensor, q_pi: torch.Tensor, q_next_pi: torch.Tensor,
            log_pi: torch.Tensor, next_log_pi: torch.Tensor, mc_returns: torch.Tensor, act_dim: int,
            args) -> torch.Tensor:
    """CQL's regulariser, per member and state: a soft maximum (logsumexp, temperature 1) of
    Q(s, .) over sampled actions, minus Q(s, a_data). Minimising it pushes the sampled actions'
    values down and the data's up. Shapes: q_data (E, B); q_rand, q_pi, q_next_pi (E, B, N) are
    Q(s, a) for N uniform actions, N actions of pi(.|s) and N of pi(.|s') (all at s);
    log_pi, next_log_pi (B, N); mc_returns (B,). Returns (E, B)."""
    if args.calql:
        # Cal-QL: the POLICY's values are floored at the data's return-to-go G(s) before being
        # pushed down, so they are pushed down no further than G (random actions are untouched)
        bound = mc_returns.view(1, -1, 1)  # (1, B, 1)
        q_pi, q_next_pi = torch.maximum(q_pi, bound), torch.maximum(q_next_pi, bound)
    if args.cql_importance_sample:
        # logsumexp over the whole action space, estimated from samples: divide each exp(Q) by
        # the density it was drawn with (uniform on [-1, 1]^A: 0.5^A; the policy: pi(a|s))
        uniform_log_density = act_dim * math.log(0.5)
        values = torch.cat([q_rand - uniform_log_density, q_pi - log_pi, q_next_pi - next_log_pi], dim=-1)  # (E, B, 3N)
        soft_max = torch.logsumexp(values, dim=-1)  # (E, B)
    else:
        # kitchen: a plain soft maximum over the 3N samples and the data action itself
        values = torch.cat([q_rand, q_data.unsqueeze(-1), q_pi, q_next_pi], dim=-1)  # (E, B, 3N + 1)
        soft_max = torch.logsumexp(values, dim=-1) - math.log(values.shape[-1])
    return soft_max - q_data  # (E, B)


def update_critic_calql(critic, critic_target, actor, alpha_param, cql_lagrange_param, critic_opt, cql_lagrange_opt,
                        batch: dict, args) -> dict:
    """One Cal-QL critic step: TD loss on ALL members, plus the CQL term on `num_min_qs`
    sub-sampled members (docs/algorithms.md §3), then the target update."""
    obs, actions = batch["obs"], batch["actions"]  # (B, obs), (B, A)
    (B, A), N = actions.shape, args.cql_n_actions
    # Cal-QL always backs up the best of the sampled next actions, in every domain (docs/algorithms.md §3)
    target_q = td_target(critic_target, actor, alpha_param, batch, args, max_backup=True)  # (B,)
    q = critic(obs, actions)  # (E, B)
    td_loss = F.mse_loss(q, target_q.expand_as(q))

    # --- the CQL regulariser: 3N actions per state, all evaluated at s ---
    idx = draw_members(args.num_qs, args.num_min_qs, obs.device)  # the sub-sampled members
    with torch.no_grad():  # the actions are inputs to the critic's loss; the actor is not trained here
        rand_actions = torch.rand(B * N, A, device=obs.device) * 2.0 - 1.0  # uniform in [-1, 1]^A
        pi_actions, log_pi = actor.sample(obs.repeat_interleave(N, dim=0))  # (B * N, A), (B * N,)
        next_pi_actions, next_log_pi = actor.sample(batch["next_obs"].repeat_interleave(N, dim=0))
    obs_rep = obs.repeat_interleave(N, dim=0).repeat(3, 1)  # (3 * B * N, obs): s, for every sampled action
    q_sampled = critic(obs_rep, torch.cat([rand_actions, pi_actions, next_pi_actions]), idx)  # (E', 3 * B * N)
    q_rand, q_pi, q_next_pi = q_sampled.view(len(idx), 3, B, N).unbind(dim=1)  # each (E', B, N)
    gap = cql_gap(q[idx], q_rand, q_pi, q_next_pi, log_pi.view(B, N), next_log_pi.view(B, N),
                  batch["mc_returns"], A, args).mean()
    if args.cql_lagrange:
        # dual form (antmaze): the weight alpha' = softplus(param), 1.0 at the start, grows while
        # the gap exceeds the target and shrinks below it. Official WSRL code: this alpha' alone
        # weighs the term (JaxCQL multiplies it by --cql-alpha too, a weight 5 at the start).
        alpha_prime = F.softplus(cql_lagrange_param)
        cql_loss = alpha_prime.detach() * (gap - args.cql_target_gap)
    else:
        cql_loss = args.cql_alpha * gap
    critic_opt.zero_grad(set_to_none=True)
    backward(td_loss + cql_loss)
    critic_opt.step()
    if args.cql_lagrange:  # gradient ascent on the multiplier: minimise -alpha' * (gap - target)
        lagrange_loss = -F.softplus(cql_lagrange_param) * (gap.detach() - args.cql_target_gap)
        cql_lagrange_opt.zero_grad(set_to_none=True)
        backward(lagrange_loss)
        cql_lagrange_opt.step()
    soft_update(critic_target, critic, args.tau)  # after every critic step
    return {"qf_loss": (td_loss + cql_loss).detach(), "td_loss": td_loss.detach(), "cql_gap": gap.detach(),
            "qf_mean": q.detach().mean(), "cql_alpha_prime": F.softplus(cql_lagrange_param.detach())}


def make_cql_lagrange(args, device: torch.device) -> tuple:
    """The Lagrange multiplier alpha' = softplus(param) of the CQL term (--cql-lagrange), 1.0 at the
    start, and its Adam (plain, not fused, as it has always been: fused Adam rounds differently)."""
    cql_lagrange_param = torch.tensor(inverse_softplus(1.0), device=device, requires_grad=True)
    return cql_lagrange_param, Adam([cql_lagrange_param], lr=args.cql_lagrange_lr,
                                                **adam_options(device, args, fused=False))


def calql_online_start(args, env) -> int:
    """The official Cal-QL online start: no update until the buffer holds the online part of a
    batch, batch * (1 - offline ratio) transitions, and for Cal-QL one full episode length as well,
    since Cal-QL trains only on FINISHED episodes (those whose returns-to-go are known). Returns
    the last step without an update. Called before phase 1: an online budget that ends by then
    is refused before any pre-training is spent on it."""
    online_per_batch = args.batch_size - offline_per_batch(args.batch_size, args.offline_ratio)
    episode_limit = (env.spec.max_episode_steps or 0) if env.spec is not None else 0
    start = max(online_per_batch, episode_limit if args.calql else 0)
    if 0 < args.online_steps <= start:
        raise SystemExit(f"error: --online-steps {args.online_steps:,} ends before Cal-QL's first online update, after "
                         f"step {start:,} (the online part of a batch{' and one episode length' if args.calql else ''}, "
                         f"as the official code); raise --online-steps above {start:,}, or pass 0 to pre-train only.")
    return start


def calql_update(actor, critic, critic_target, alpha_param, cql_lagrange_param, actor_opt, critic_opt, alpha_opt,
                 cql_lagrange_opt, batch: dict, args, target_entropy: float) -> dict:
    """As sac_update, with the Cal-QL critic step: one critic step per minibatch of the sample
    (offline: one; online: `utd`), then ONE actor + temperature step on all of it. The actor
    step is SAC's (CQL's policy objective is SAC's)."""
    with autocast(args, batch["obs"].device):  # --precision bf16 (a no-op in fp32)
        for k in range(len(batch["rewards"]) // args.batch_size):
            minibatch = {key: v[k * args.batch_size:(k + 1) * args.batch_size] for key, v in batch.items()}
            info = update_critic_calql(critic, critic_target, actor, alpha_param, cql_lagrange_param, critic_opt,
                                       cql_lagrange_opt, minibatch, args)
        info.update(update_actor_and_alpha(actor, critic, alpha_param, actor_opt, alpha_opt, batch, args, target_entropy,
                                           max_backup=True))
    return info


# [end copy]


# [copy: returns-to-go]
# ---------------------------------------------------------------------------------------------
# Monte-Carlo returns-to-go: Cal-QL's lower bound on Q (docs/algorithms.md §3)
# ---------------------------------------------------------------------------------------------
# After the reward transform, a step that does not reach the goal costs this in sparse domains
SPARSE_NEGATIVE_REWARD = {"antmaze": -5.0, "pointmaze": -5.0, "adroit": -5.0}


def returns_to_go(rewards: np.ndarray, terminals: np.ndarray, timeouts: np.ndarray, gamma: float,
                  negative_reward: Optional[float] = None) -> np.ndarray:
    """G_t = r_t + gamma * r_{t+1} + ... up to the end of t's trajectory, for flat arrays of
    consecutive trajectories. A trajectory ends at a terminal (nothing follows), at a timeout
    (it was cut: the sum stops there too, since a Monte-Carlo return cannot bootstrap) and at
    the end of the arrays. Sparse domains: a trajectory whose rewards are ALL `negative_reward`
    never reached the goal, and its cut sum would say it was about to; it gets the value of
    failing forever, negative_reward / (1 - gamma), at every step (official Cal-QL)."""
    rewards = np.asarray(rewards, dtype=np.float64)
    ends = np.asarray(terminals, dtype=bool) | np.asarray(timeouts, dtype=bool)
    ends[-1] = True
    out = np.empty_like(rewards)
    start = 0
    for stop in np.flatnonzero(ends) + 1:
        r = rewards[start:stop]
        if negative_reward is not None and np.all(r == negative_reward):
            out[start:stop] = negative_reward / (1.0 - gamma)
        else:
            g = 0.0
            for t in range(stop - 1, start - 1, -1):  # backwards: G_t = r_t + gamma * G_{t+1}
                g = rewards[t] + gamma * g
                out[t] = g
        start = stop
    return out.astype(np.float32)


def label_last_episode(rb, length: int, gamma: float, negative_reward: Optional[float]) -> None:
    """Online: when an episode ends, write the returns-to-go of its `length` transitions (the
    last ones added). Until then they hold -inf, i.e. no bound (official Cal-QL labels online
    episodes the same way, when they end)."""
    idx = (torch.arange(rb.pos - length, rb.pos) % rb.capacity).to(rb.device)  # the buffer is circular
    rewards, terminals = rb.rewards[idx].cpu().numpy(), rb.terminals[idx].cpu().numpy()
    g = returns_to_go(rewards, terminals, np.zeros(length, dtype=bool), gamma, negative_reward)
    rb.mc_returns[idx] = torch.as_tensor(g, device=rb.device)


# [end copy]


# [copy: q-diagnostics]
# ---------------------------------------------------------------------------------------------
# The paper's evidence (docs/algorithms.md §7): Q and TD error on data the critic never trains on
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def q_diagnostics(critic, critic_target, actor, alpha_param, batch: dict, args, max_backup: bool,
                  noise: Optional[tuple] = None) -> dict:
    """Mean Q(s, a) over members and transitions, and the mean squared TD error (against the
    target of the learner being trained: `max_backup` as its td_target), on a batch. On held-out
    offline data, a falling Q after the switch is the "downward spiral" (Fig. 4)."""
    q = critic(batch["obs"], batch["actions"])  # (E, B)
    target = td_target(critic_target, actor, alpha_param, batch, args, max_backup, noise)  # (B,)
    return {"q": float(q.mean()), "td_error": float((q - target).pow(2).mean())}


# [end copy]


# [copy: kl-diagnostics]
# ---------------------------------------------------------------------------------------------
# Did fine-tuning forget the pre-trained agent? (docs/algorithms.md §7, paper Fig. 8)
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def policy_kl(actor_pre: Actor, actor: Actor, obs: torch.Tensor, samples: int = 10) -> float:
    """KL(pi_pre(.|s) || pi(.|s)) averaged over states, estimated by Monte Carlo with actions
    drawn from pi_pre: mean of log pi_pre(a|s) - log pi(a|s). Both policies squash the same
    pre-tanh sample u, and tanh's Jacobian term cancels in the difference, so this estimates
    the KL of the two Gaussians over u (which equals the KL of the squashed policies)."""
    mean_pre, log_std_pre = actor_pre(obs)  # (B, A)
    mean, log_std = actor(obs)
    u = mean_pre + log_std_pre.exp() * torch.randn(samples, *mean_pre.shape, device=obs.device)  # (S, B, A)
    return float((tanh_gaussian_log_prob(u, mean_pre, log_std_pre) - tanh_gaussian_log_prob(u, mean, log_std)).mean())


@torch.no_grad()
def q_softmax_kl(critic_pre, critic, actor_pre: Actor, actor: Actor, obs: torch.Tensor, n_actions: int) -> float:
    """KL(softmax(Q_pre(s, .)) || softmax(Q(s, .))) over n_actions actions per state, half drawn
    from pi_pre(s) and half from pi(s), averaged over states. It compares what the two critics
    PREFER, whatever their scale (Q is the ensemble mean)."""
    B, half = len(obs), n_actions // 2
    obs_rep = obs.repeat_interleave(half, dim=0)  # (B * half, obs)
    actions = torch.cat([actor_pre.sample(obs_rep)[0].view(B, half, -1), actor.sample(obs_rep)[0].view(B, half, -1)], dim=1)
    obs_all, actions = obs.repeat_interleave(2 * half, dim=0), actions.flatten(0, 1)  # (B * 2half, ...)
    log_p = F.log_softmax(critic_pre(obs_all, actions).mean(0).view(B, -1), dim=1)  # (B, n)
    log_q = F.log_softmax(critic(obs_all, actions).mean(0).view(B, -1), dim=1)
    return float((log_p.exp() * (log_p - log_q)).sum(1).mean())


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


# [copy: wsrl-analysis]
# ---------------------------------------------------------------------------------------------
# The paper's evidence, logged (docs/metrics.md: analysis/)
# ---------------------------------------------------------------------------------------------
def log_analysis(run: Run, learner: dict, prefix: str, step: int, batches: dict, max_backup: bool,
                 noise: Optional[tuple] = None, pre: Optional[tuple] = None) -> None:
    """The paper's evidence, logged: Q and TD error on each batch (held-out offline data, online
    data); with `pre` = (pi_pre, Q_pre), online, how far fine-tuning has moved from the
    pre-trained agent (Fig. 8). `max_backup` and `noise`: as the learner's own td_target."""
    actor, critic = learner["actor"], learner["critic"]
    for name, batch in batches.items():
        run.log(prefix, {f"{k}_{name}": v for k, v in q_diagnostics(
            critic, learner["critic_target"], actor, learner["alpha_param"], batch, run.args, max_backup, noise).items()}, step)
        if pre is not None:
            run.log("analysis/", {f"policy_kl_{name}": policy_kl(pre[0], actor, batch["obs"]), f"q_softmax_kl_{name}":
                                  q_softmax_kl(pre[1], critic, pre[0], actor, batch["obs"], run.args.analysis_actions)}, step)


# [end copy]


# [copy: pretrain]
# ---------------------------------------------------------------------------------------------
# PHASE 1, offline pre-training (Alg. 1, line 1), shared by the scripts that pre-train an SAC agent
# ---------------------------------------------------------------------------------------------
def pretrain(run: Run, learner: dict, update_step, offline_rb: ReplayBuffer, heldout: dict, gen: torch.Generator,
             eval_env: gym.Env, ref_scores, env_id: str, algo: str, max_backup: bool) -> int:
    """PHASE 1 (Alg. 1, line 1): the offline method `algo` (Cal-QL, CQL or IQL; one gradient step is
    `update_step`) on the offline data for --offline-steps steps, then the pre-trained checkpoint
    (the hand-over to fine-tuning, and to the WSRL scripts and jsrl.py). `max_backup`: as the
    learner's td_target, for the diagnostics. Returns the last step done (fewer after Ctrl-C)."""
    args, summary, step = run.args, run.summary, 0
    print(f"===== PHASE 1: offline pre-training ({algo}), {args.offline_steps:,} gradient steps =====")
    if run.resume:  # every weight, moment, counter and random stream as it was
        step = run.resume["step"]
        restore_from(run.resume, **learner)
        set_rng_states(run.resume["rng"], gen)  # last: nothing may draw from them after this
    with run.stoppable("offline", saving="the checkpoint so far"):
        for step in run.steps(step + 1, args.offline_steps):
            info = update_step(offline_rb.sample((args.batch_size,), gen))  # one gradient step
            last = step == args.offline_steps
            if summary["first_losses"] is None:
                summary["first_losses"] = {k: float(v) for k, v in info.items()}
            if step % 100 == 0 or last:
                run.log_losses("offline/losses/", info, step, "offline")
            if step % args.offline_eval_interval == 0 or last:
                run.log_eval("offline/", step, evaluate(learner["actor"], eval_env, args.eval_episodes, ref_scores),
                             summary["offline_evals"])
                log_analysis(run, learner, "offline/analysis/", step, {"heldout": heldout}, max_backup)
            if step % 250 == 0 or last:  # an offline step is slow on CPU: report often
                run.progress(step, args.offline_steps, run.start_time, (run.start_time, 0), float("nan"),
                             summary["offline_evals"], info, phase="offline", tag="offline/SPS")
            if args.resume_interval and step % args.resume_interval == 0 and not last:
                run.save_resume_point(step, phase="offline", **learner, eval_env=env_snapshot(eval_env, simulator=False),
                                      rng=rng_states(gen))
    path = summary["pretrained_checkpoint"] = os.path.join(run.run_dir, f"{args.exp_name}_pretrained.pt")
    save_checkpoint(path, **learner, args=args, step=step, env_id=env_id, complete=not run.interrupted,
                    planned_steps=args.offline_steps, dataset=run.dataset)
    print(f"pre-trained checkpoint: {path}")
    return step


# [end copy]


def main(args: Args) -> dict:
    # Algorithm 1 of the paper, as this function runs it (the "# =====" banners below):
    #   PHASE 1   pre-train the actor and the critic ensemble offline with Cal-QL (or load a checkpoint)
    #   DISCARD   the offline data: the online replay buffer starts EMPTY (HAND-OVER: SAC starts from the agent)
    #   PHASE 2   warmup: K steps of the FROZEN pre-trained policy fill that buffer; no update
    #   PHASE 3   in the same loop, fine-tune with plain SAC (no pessimism) at a high UTD, online data only

    # ===== SETUP: flags, data, environments, logs (support code in wsrl_utils.py: skim it) =========
    run = Run(args, "wsrl_calql_sac.py")  # --resume: the run's own settings and state
    args, device = run.args, run.device
    ckpt = load_pretrained(args, device)  # --pretrained-checkpoint: PHASE 1 is skipped
    check_args(args, {"--offline-steps": (args.offline_steps, 0 if ckpt else 1), "--online-steps": (args.online_steps, 0),
                      "--warmup-steps": (args.warmup_steps, 0), "--policy-freeze-steps": (args.policy_freeze_steps, 0),
                      "--offline-eval-interval": (args.offline_eval_interval, 1), "--analysis-interval": (args.analysis_interval, 1)})
    data, metadata, domain, env_id, preset = load_task(args)
    if args.max_target_backup is None:  # App. I: online SAC backs up the best next action on antmaze only
        args.max_target_backup = domain in ("antmaze", "pointmaze")
    reward_transform, negative_reward = REWARD_TRANSFORMS[domain], SPARSE_NEGATIVE_REWARD.get(domain)
    # Cal-QL's bound on the transformed rewards; held-out transitions (the pre-training's) that no update sees
    data["mc_returns"] = returns_to_go(data["rewards"], data["terminals"], data["timeouts"], args.gamma, negative_reward)
    train_data, heldout_data = heldout_split(data, args.heldout_size, ckpt["args"]["seed"] if ckpt else args.seed)
    gen = run.seed()  # the replay sampler's random stream
    env, eval_env, obs_dim, act_dim = build_envs(env_id, args.seed, metadata, ckpt, train_data, args.dataset_id)
    calql_start = calql_online_start(args, env) if args.online_algo == "calql" else 0  # (a budget too short: refused)
    run.open_logs(env_id, purge=bool(run.resume) and run.resume["phase"] == "offline", metadata=metadata)
    ref_scores, summary = reference_scores(env_id, metadata), run.summary

    # ===== THE AGENT: actor, critic ensemble and target, temperature, Cal-QL's Lagrange multiplier ==
    actor, critic, critic_target, alpha_param, actor_opt, critic_opt, alpha_opt = make_sac_agent(obs_dim, act_dim, args, device)
    cql_lagrange_param, cql_lagrange_opt = make_cql_lagrange(args, device)
    learner = dict(actor=actor, critic=critic, critic_target=critic_target, alpha_param=alpha_param, actor_opt=actor_opt,
                   critic_opt=critic_opt, alpha_opt=alpha_opt, cql_lagrange_param=cql_lagrange_param,
                   cql_lagrange_opt=cql_lagrange_opt)  # (what checkpoints and resume points hold)
    if ckpt is not None:  # the pre-trained agent, with its Adam states
        restore(ckpt, **learner)
    target_entropy = -float(act_dim) if args.target_entropy is None else args.target_entropy

    def calql_step(batch: dict) -> dict:  # one Cal-QL step: phase 1, and phase 3 with --online-algo calql
        return calql_update(**learner, batch=batch, args=args, target_entropy=target_entropy)

    # --cuda-graphs: each update recorded once as a CUDA graph, then replayed (a plain call otherwise);
    # one wrap per batch shape: offline B transitions, online utd * B
    offline_step, online_calql_step = run.graphs.wrap(calql_step), run.graphs.wrap(calql_step)
    offline_rb = ReplayBuffer.from_arrays(train_data, device)
    heldout = to_batch(heldout_data, device)  # evaluation only: never sampled for training
    del data, train_data, heldout_data  # from here on the offline data lives in offline_rb alone
    print(f"WSRL on {env_id} | {device}, {args.precision} | data {args.dataset_id}: {offline_rb.size:,} transitions "
          f"(+{len(heldout['rewards']):,} held out) | domain {domain}"
          + (f" (preset: {', '.join(f'{k}={v}' for k, v in preset.items())})" if preset else "") + f" | logs: {run.run_dir}")
    resumed_online = run.start(eval_env, offline_evals=True) == "online"  # eval env seeded; resumed: as it was

    # ===== PHASE 1: OFFLINE PRE-TRAINING WITH CAL-QL (Alg. 1, line 1) ===============================
    if ckpt is None and not resumed_online:  # (else: from a checkpoint, or resumed after phase 1)
        pretrain(run, learner, offline_step, offline_rb, heldout, gen, eval_env, ref_scores, env_id,
                 "Cal-QL" if args.calql else "CQL", max_backup=True)
    else:
        print(f"===== PHASE 1 done: from {summary.get('pretrained_checkpoint', args.pretrained_checkpoint)} =====")

    # ===== DISCARD THE OFFLINE DATA (Sec. 4: WSRL fine-tunes without it) ==========================
    rb = ReplayBuffer(obs_dim, act_dim, args.buffer_size, device)  # Alg. 1, line 2: a fresh, EMPTY buffer
    warmup_env_steps = args.warmup_steps
    if args.warmup_policy == "dataset":  # App. K ablation: K offline transitions instead of K warmup steps
        seed_batch = offline_rb.sample((args.warmup_steps,), gen)
        for i in range(args.warmup_steps):
            rb.add(seed_batch["obs"][i], seed_batch["actions"][i], seed_batch["rewards"][i],
                   seed_batch["next_obs"][i], bool(seed_batch["terminals"][i]), False)
        warmup_env_steps = 0
    retained = offline_rb if args.offline_ratio > 0 else None  # App. L ablation: keep part of every batch offline
    print(f"offline data RETAINED (ablation): {args.offline_ratio:.0%} of every online batch comes from it" if retained
          else "offline data DISCARDED: online batches come from the online buffer only")
    del offline_rb  # without retention nothing refers to the dataset any more: it is gone

    # ===== HAND-OVER: SAC starts from the pre-trained agent (Alg. 1, line 3; App. H) ===============
    # frozen copies: the warmup acts with pi_pre, and the analysis measures the distance to both
    actor_pre = copy.deepcopy(actor).requires_grad_(False)
    critic_pre = copy.deepcopy(critic).requires_grad_(False)
    pre = (actor_pre, critic_pre)
    # The actor, critics, target, temperature AND their Adam states carry over (the paper keeps the
    # optimizer state), unless an ablation asks for fresh networks. (Fresh networks are loaded INTO
    # the existing ones, and an optimizer starts afresh by forgetting its state: every name keeps
    # meaning the same object for the whole run.)
    if not args.init_policy:  # Fig. 13: fine-tune a randomly initialised policy
        actor.load_state_dict(Actor(obs_dim, act_dim, args.actor_hidden, args.actor_layers, args.last_hidden_init_scale,
                                    args.state_dependent_std, args.layer_norm).state_dict())
        actor_opt.state.clear()  # a fresh Adam: no moments, step 0
    if not args.init_critic:  # Fig. 12 (left): fine-tune randomly initialised critics
        critic.load_state_dict(QEnsemble(obs_dim, act_dim, args.critic_hidden, args.critic_layers, args.num_qs,
                                         args.last_hidden_init_scale, args.layer_norm).state_dict())
        critic_target.load_state_dict(critic.state_dict())
        critic_opt.state.clear()

    # ===== PHASE 2: WARMUP, then PHASE 3: HIGH-UTD FINE-TUNING (Alg. 1, lines 4-15) ===============
    # SO2's perturbed value update (--online-algo so2): clipped Gaussian noise on the target's next action
    so2_noise = (args.target_noise, args.target_noise_clip) if args.online_algo == "so2" else None

    def sac_step(batch: dict, update_actor: bool = True) -> dict:  # one high-UTD SAC (or SO2) step
        return sac_update(actor, critic, critic_target, alpha_param, actor_opt, critic_opt, alpha_opt, batch, args,
                          target_entropy, update_actor=update_actor, noise=so2_noise)

    sac_step = run.graphs.wrap(sac_step)  # --compile, --cuda-graphs, as above
    # the last step without a gradient step, as the official loop: the warmup's end, and never before the
    # buffer holds the online part of one batch (--warmup-steps 0); --online-algo calql: Cal-QL's online start
    first_batch = args.batch_size - offline_per_batch(args.batch_size, args.offline_ratio) - rb.size
    learning_starts = max(warmup_env_steps, first_batch, calql_start)
    last_return, episode_length, info = float("nan"), 0, {}  # no update yet: no losses to show
    online_max_backup = args.online_algo == "calql" or args.max_target_backup  # as the online learner's target
    pretrain_interrupted, step = run.interrupted, 0  # a Ctrl-C in phase 1 ends the run: no online phase
    if not pretrain_interrupted:
        print(f"===== PHASE 2: warmup, {warmup_env_steps:,} steps of the frozen {args.warmup_policy} policy; "
              f"PHASE 3: {args.online_algo.upper()} fine-tuning at UTD {args.utd} to step {args.online_steps:,} "
              f"(first update after step {learning_starts:,}) =====")
        if resumed_online:  # at an episode end: no episode in progress
            restore_from(run.resume, **learner, actor_pre=actor_pre, critic_pre=critic_pre, buffer=rb)
            step, last_return, obs = run.resume["step"], run.resume["last_return"], run.resume["obs"]
            obs = restore_env(env, run.resume["env"], obs)
            set_rng_states(run.resume["rng"], gen)  # last: nothing may draw from them after this
        else:
            run.resume_step = None  # the online phase counts its own steps
            # step 0 = the pre-trained agent, so every online curve starts at the offline result
            run.log_eval("", 0, evaluate(actor, eval_env, args.eval_episodes, ref_scores), summary["evals"])
            log_analysis(run, learner, "analysis/", 0, {"heldout": heldout}, online_max_backup, so2_noise, pre)
            obs, _ = env.reset(seed=args.seed)
        online_start, updates_start = time.time(), None
        with run.stoppable("online"):
            for step in run.steps(step + 1, args.online_steps):  # Alg. 1, line 4
                if step <= warmup_env_steps:  # PHASE 2, Alg. 1 line 6: the FROZEN pre-trained policy acts,
                    # sampling (not its mean), so the first online batches look like the offline data (Sec. 4)
                    if args.warmup_policy == "pretrained":
                        action = actor_pre.act(obs, deterministic=False)
                    else:  # ablation: uniform random actions
                        action = env.action_space.sample()
                else:  # PHASE 3, Alg. 1 line 8: the policy being fine-tuned acts
                    action = actor.act(obs, deterministic=False)
                (o, a, r, next_o, terminated, ended), obs, episode = env_step(env, obs, action)
                rb.add(o, a, reward_transform(r), next_o, terminated, ended)  # Alg. 1, line 10
                episode_length += 1
                if ended and args.online_algo == "calql":  # Cal-QL's bound for online data
                    label_last_episode(rb, episode_length, args.gamma, negative_reward)
                episode_length = 0 if ended else episode_length
                last_return = run.log_episode(episode, step, last_return)

                if step > learning_starts:  # Alg. 1, lines 11-14: no gradient step during warmup
                    updates_start = updates_start or (time.time(), step)
                    unfinished = episode_length if args.online_algo == "calql" and args.calql else 0
                    batch = sample_batch(rb, retained, args.utd, args.batch_size, args.offline_ratio, gen, unfinished)
                    if args.online_algo in ("sac", "so2"):  # plain SAC: no pessimism, no behaviour constraint
                        # App. F ablation: the actor (and temperature) frozen for --policy-freeze-steps
                        info = sac_step(batch, update_actor=step - warmup_env_steps > args.policy_freeze_steps)
                    else:  # Fig. 12 (right) ablation: keep Cal-QL's regulariser online
                        info = online_calql_step(batch)
                    if step % 100 == 0 or step == args.online_steps:
                        run.log_losses("losses/", info, step, "online")
                if step % args.analysis_interval == 0:  # Q on held-out and online data; KL to pi_pre and Q_pre
                    log_analysis(run, learner, "analysis/", step, {"heldout": heldout, "online": rb.sample(
                        (args.batch_size,), gen)}, online_max_backup, so2_noise, pre)
                if step % args.eval_interval == 0 or step == args.online_steps:
                    run.log_eval("", step, evaluate(actor, eval_env, args.eval_episodes, ref_scores), summary["evals"])
                if step % 1000 == 0 or step == args.online_steps:
                    summary["sps"] = run.progress(step, args.online_steps, online_start, updates_start, last_return,
                                                  summary["evals"], info, phase="online")
                if run.resume_point_due(step, ended):
                    run.save_resume_point(step, phase="online", **learner, actor_pre=actor_pre, critic_pre=critic_pre,
                                          buffer=rb, last_return=last_return, obs=obs, env=env_snapshot(env),
                                          eval_env=env_snapshot(eval_env, simulator=False), rng=rng_states(gen))

    # ===== SAVE =================================================================================
    if args.save_model and not pretrain_interrupted:  # a cut-short pre-training has no fine-tuned agent to save
        path = summary["checkpoint"] = os.path.join(run.run_dir, f"{args.exp_name}.pt")
        save_checkpoint(path, **learner, args=args, step=step, env_id=env_id, complete=step == args.online_steps,
                        planned_steps=args.online_steps, dataset=run.dataset)
    if summary["offline_evals"]:
        save_curve(os.path.join(run.run_dir, "offline_eval_curve.png"), summary["offline_evals"],
                   f"{'Cal-QL' if args.calql else 'CQL'} offline on {args.dataset_id}")
    if summary["evals"]:
        save_curve(os.path.join(run.run_dir, "eval_curve.png"), summary["evals"], f"WSRL on {env_id}",
                   {"updates start": learning_starts} if learning_starts else None)
    return run.finish(step, env, eval_env)


if __name__ == "__main__":
    main(tyro.cli(Args))
