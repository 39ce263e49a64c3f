"""TD3-C: pre-train TD3+BC offline, then fine-tune with TD3 whose actor may not move far from its target.

"Finetuning from Offline Reinforcement Learning: Challenges, Trade-offs and Practical Solutions"
(Luo, Kay, Grefenstette and Deisenroth, 2023). Offline, TD3+BC (Fujimoto & Gu, 2021) learns a
deterministic policy that stays near the data's actions. Fine-tuned online with plain TD3 it
improves fastest but may suffer "policy collapse": right after the switch the critic is wrong on
the new states and the actor follows it (Sec. 3); TD3+BC kept online is stable but slow. TD3-C
(Sec. 4) keeps TD3 and constrains its actor step instead: maximise Q_1(s, pi(s)) while the mean
squared distance of pi from its own slowly moving target policy pi' stays below epsilon.

The equations (pi' and Q'_1, Q'_2 are the target networks; every learner here shares the critic):
both critics regress to y = r + gamma (1 - d) min_i Q'_i(s', a~), a~ = clip(pi'(s') + clip(N(0,
0.2^2), -0.5, 0.5), -1, 1); after every 2nd critic step the actor takes one step and all targets
move by tau = 0.005. Actor, TD3+BC (offline, and online with `--online-algo td3bc`): minimise
-lambda mean Q_1(s, pi(s)) + mean (pi(s) - a)^2, lambda = 2.5 / mean |Q_1(s, pi(s))| held constant.
TD3 (`--online-algo td3`): minimise -mean Q_1(s, pi(s)). TD3-C (`--online-algo td3c`, default):
minimise -mean Q_1(s, pi(s)) + lambda D with D = mean ||pi(s) - pi'(s)||^2 and dQ_1/da clipped to
[-1, 1], while lambda = softplus(p) minimises lambda (epsilon - D), epsilon = 1e-5: it grows while
D > epsilon and shrinks while D < epsilon. Online the agent acts with clip(pi(s) + N(0, 0.1^2), -1,
1), and one critic step follows each environment step once the buffer holds 1,000 transitions.

From the paper (Sec. 3.1, App. B, Tables B1-B2): Adam, learning rates 3e-4, tau 0.005, policy
delay 2, replay 1e6 at most and 1,000 at least, batch 256, exploration noise 0.1, target noise 0.2
clipped at 0.5, TD3+BC alpha 2.5, epsilon 1e-5, dQ/da clipping on for TD3-C, 2 x 256 networks,
500k offline steps, 200k online steps, one gradient step per environment step, no state
normalisation. Our choices where it is silent or where we depart, each said again where it is
coded: the multiplier (initial value 100, Adam at 1e-2 as MPO's dual variables, softplus), the
sign of its term (Eq. 5 as printed cannot be minimised over lambda), the clip value 1.0 and its
elementwise form, TD3+BC's state normalisation ON by default, this project's LayerNorm + ReLU
networks (the paper: Acme's LayerNormMLP with ELU), the critic targets moved with the actor every
2nd step (Fujimoto's TD3; Acme's moves them after every critic step), the Adam states kept at the
switch, and the CPU-sized defaults (5,000 offline and 15,000 online steps).

    python td3c.py --dataset-id local/halfcheetah/medium-v0                          # CPU-sized: TD3+BC, then TD3-C
    python td3c.py --pretrained-checkpoint runs/RUN/td3c_pretrained.pt --online-algo td3   # plain TD3: the collapse
    python td3c.py --pretrained-checkpoint CKPT --offline-data-in-buffer             # the replay of Sec. 3.2 and Table 1
    python td3c.py --dataset-id mujoco/halfcheetah/medium-v0 --no-normalize-states --offline-steps 500000 \\
        --online-steps 200000 --eval-interval 5000                                   # paper scale (GPU)
"""

import copy
import math
import os
import time
from dataclasses import dataclass
from typing import Literal, Optional

# SUPPORT CODE (datasets, environments, checkpoints, argument checks, progress): not the algorithm,
# skip it on a first read. Imported before torch: it sets how idle OpenMP threads wait.
from wsrl_utils import (
    Adam, gradient, NormalizedStates, ReplayBuffer, REWARD_TRANSFORMS, Run, RunArgs, adam_options, autocast, backward,
    build_env, check_args, check_checkpoint_fits, dataset_record, domain_of, env_id_for, env_step, full_precision,
    heldout_split, load_offline_data, read_td3_checkpoint, reference_scores, restore_td3, sample_batch, sample_newest,
    save_curve, save_td3_checkpoint, stop_if_diverged, to_batch, use_td3_checkpoint_settings,
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
    """start from this checkpoint (a td3c_pretrained.pt, or a --save-model file, of td3c.py) and
    skip phase 1"""
    offline_steps: int = 5_000
    """phase 1: TD3+BC gradient steps (CPU default; paper: 500k)"""
    online_steps: int = 15_000
    """environment steps online (CPU default; paper: 200k)"""
    offline_eval_interval: int = 1_000
    """evaluate every this many offline gradient steps"""
    eval_interval: int = 2_500
    """evaluate the deterministic policy every this many online environment steps"""
    eval_episodes: int = 5
    """episodes per evaluation (the paper does not say how many)"""
    analysis_interval: int = 250
    """log analysis/ (on held-out offline data and on online data; docs/metrics.md) every this many
    online steps"""

    # ---- environment and data -------------------------------------------------------------
    env_id: Optional[str] = None
    """gymnasium environment id; None: the dataset's environment"""
    dataset_id: Optional[str] = None
    """Minari dataset id: a local one (made with `tools/export_dataset.py`) or one to
    download; None: the --pretrained-checkpoint's dataset, else mujoco/hopper/medium-v0"""
    domain: Literal["auto", "locomotion", "antmaze", "pointmaze", "kitchen", "adroit"] = "auto"
    """benchmark domain; sets the reward transform (auto: from the dataset id)"""
    offline_ratio: float = 0.0
    """share of every ONLINE batch drawn from the offline data, the rest from a buffer of online
    data only (paper App. C.1); 0: none"""
    offline_data_in_buffer: bool = False
    """the online replay buffer starts filled with the offline data and is sampled uniformly (the
    paper's Sec. 3.2 and Table 1); default: it starts empty and the dataset is discarded (Sec. 3.3,
    App. C.2)"""
    heldout_size: int = 1000
    """offline transitions kept apart, never trained on, for the diagnostics on offline states
    (analysis/); at most a tenth of the dataset"""
    normalize_states: bool = True
    """TD3+BC's state normalisation: every observation, offline, online and in evaluation, becomes
    (s - mean) / (std + 1e-3) with the dataset's statistics, saved in the checkpoint (the TD3-C paper
    turned it off, App. B: --no-normalize-states); a checkpoint's own setting replaces it"""

    # ---- algorithm --------------------------------------------------------------------------
    online_algo: Literal["td3c", "td3", "td3bc"] = "td3c"
    """phase 2 learner: TD3-C (the paper's proposal, Sec. 4), plain TD3 (which may collapse, Sec.
    3.2) or TD3+BC continued (stable but slow)"""
    min_replay_size: int = 1_000
    """no update online until the replay buffer holds this many transitions (paper, Table B1: 1,000;
    with --offline-data-in-buffer the offline data counts)"""
    buffer_size: int = 1_000_000
    """online replay buffer capacity"""
    batch_size: int = 256
    """transitions per critic update"""
    utd: int = 1
    """update-to-data ratio online: critic updates per environment step (paper: 1)"""
    critic_hidden: Optional[int] = None
    """width of the critics' hidden layers (None: 256, the paper's, in every domain; a
    checkpoint's own replaces it)"""
    critic_layers: Optional[int] = None
    """hidden layers of each critic (None: 2, the paper's; a checkpoint's own replaces it)"""
    actor_hidden: Optional[int] = None
    """width of the actor's hidden layers (None: 256, the paper's; a checkpoint's own replaces it)"""
    actor_layers: Optional[int] = None
    """hidden layers of the actor (None: 2, the paper's; a checkpoint's own replaces it)"""
    last_hidden_init_scale: Optional[float] = None
    """orthogonal-init gain of the last hidden layer of actor and critics (None: 1e-2, as the
    other scripts use in locomotion; a checkpoint's own replaces it)"""
    actor_lr: float = 3e-4
    """actor learning rate (TD3 and the paper: 3e-4)"""
    critic_lr: float = 3e-4
    """critic learning rate"""
    gamma: float = 0.99
    """discount factor"""
    tau: float = 0.005
    """target smoothing coefficient (actor and critic targets, at every actor step)"""
    policy_delay: int = 2
    """critic steps per actor step; the targets move with the actor (TD3, paper: 2)"""
    exploration_noise: float = 0.1
    """online, std of the Gaussian noise added to pi(s) when acting (paper: 0.1)"""
    target_noise: float = 0.2
    """std of TD3's target policy smoothing noise on pi'(s') (paper: 0.2)"""
    target_noise_clip: float = 0.5
    """the target smoothing noise is clipped to [-clip, clip] (paper: 0.5)"""
    bc_alpha: float = 2.5
    """TD3+BC's alpha: the Q term's weight is alpha / mean |Q_1(s, pi(s))| (paper: 2.5)"""
    td3c_epsilon: float = 1e-5
    """TD3-C's bound epsilon on D = mean ||pi(s) - pi'(s)||^2 (paper: 1e-5)"""
    lagrange_init: float = 100.0
    """TD3-C's Lagrange multiplier at the start of phase 2 (not in the paper; ours: of the order the
    constraint D <= 1e-5 needs, so that it acts from the first online step)"""
    lagrange_lr: float = 1e-2
    """learning rate of the Lagrange multiplier (not in the paper; MPO's dual variables use 1e-2)"""
    dqda_clip: Optional[float] = None
    """clip each component of dQ_1/da to [-clip, clip] in the online actor step; 0: no clipping
    (None: 1.0 with --online-algo td3c, paper Table B2 "clipping: yes"; 0 with td3 and td3bc)"""

    # ---- generic --------------------------------------------------------------------------
    exp_name: str = "td3c"
    """name of this experiment (used in the run folder name)"""
    save_model: bool = False
    """also save the FINE-TUNED checkpoint at the end to runs/{run_name}/{exp_name}.pt (the
    pre-trained one, runs/{run_name}/{exp_name}_pretrained.pt, is always saved)"""


# =================================================================================================
# THE ALGORITHM: the networks, the losses and updates, evaluation and diagnostics, then `main`,
# which runs them in the order of the paper. Read these with the paper open. (The paper's networks
# are PAPER_NETWORKS below.)
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


# ---------------------------------------------------------------------------------------------
# TD3's networks: a deterministic actor; the twin critics are the QEnsemble above with 2 members
# ---------------------------------------------------------------------------------------------
TWIN_CRITICS = 2  # TD3's clipped double Q-learning: two critics, their min is the target
# App. B: "2 hidden layers of size 256" for policy and critic; the other scripts' small gain on the
# last hidden layer (this project's networks, not Acme's: see DeterministicActor)
PAPER_NETWORKS = dict(critic_hidden=256, critic_layers=2, actor_hidden=256, actor_layers=2, last_hidden_init_scale=1e-2)
ALGO_NAMES = {"td3c": "TD3-C", "td3": "TD3", "td3bc": "TD3+BC"}


class DeterministicActor(nn.Module):
    """pi(s) = tanh(head(trunk(s))), an action in [-1, 1]^A. The trunk is this project's, as in the
    SAC actor and the critics: Dense -> LayerNorm -> ReLU per hidden layer, orthogonal weights, the
    small gain on the last hidden layer. (Departure: the paper's Acme LayerNormMLP has LayerNorm +
    tanh after the FIRST Dense only and ELU after the others, and a near-zero output layer.)"""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int, layers: int,
                 last_hidden_scale: float = ORTHOGONAL_GAIN, exploration_noise: float = 0.1):
        super().__init__()
        sizes = [obs_dim] + [hidden] * layers
        gains = [ORTHOGONAL_GAIN] * (layers - 1) + [last_hidden_scale]
        self.trunk = nn.Sequential(*[m for i, o, g in zip(sizes[:-1], sizes[1:], gains)
                                     for m in (orthogonal_linear(i, o, g), nn.LayerNorm(o, eps=LAYER_NORM_EPS), nn.ReLU())])
        self.head = orthogonal_linear(hidden, act_dim, ORTHOGONAL_GAIN)
        self.exploration_noise = exploration_noise

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(full_precision(self.head, self.trunk(obs)))  # (B, A)

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.head.weight.device).unsqueeze(0)
        action = self(obs_t)[0]
        if not deterministic:  # TD3's exploration: Gaussian noise on the action, kept in the box
            action = (action + self.exploration_noise * torch.randn_like(action)).clamp(-1.0, 1.0)
        return action.cpu().numpy()


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


# ---------------------------------------------------------------------------------------------
# TD3, TD3+BC and TD3-C (shapes: B batch, A action dims; the critics' outputs are (2, B))
# ---------------------------------------------------------------------------------------------
def state_statistics(observations: np.ndarray, normalize: bool) -> tuple[np.ndarray, np.ndarray]:
    """TD3+BC's state normalisation (Fujimoto & Gu 2021, Sec. 5): the mean and std of the dataset's
    states, std + 1e-3; s becomes (s - mean) / std everywhere. Off: mean 0, std 1 (the identity)."""
    if not normalize:
        return np.zeros(observations.shape[1], np.float32), np.ones(observations.shape[1], np.float32)
    return observations.mean(0).astype(np.float32), (observations.std(0) + 1e-3).astype(np.float32)


@torch.no_grad()
def td3_target(critic_target, actor_target, batch: dict, args) -> torch.Tensor:
    """y = r + gamma (1 - terminal) min_i Q'_i(s', a~), a~ = clip(pi'(s') + eps, -1, 1),
    eps = clip(N(0, target_noise^2), -target_noise_clip, target_noise_clip) per action dimension.
    A truncated transition has terminal = 0, so it bootstraps."""
    next_obs = batch["next_obs"]  # (B, obs)
    next_actions = actor_target(next_obs)  # (B, A)
    # target policy smoothing (TD3, Sec. 5.3): back up the value of a small neighbourhood of pi'(s'),
    # so the critic cannot keep a narrow peak the actor would exploit
    noise = (torch.randn_like(next_actions) * args.target_noise).clamp(-args.target_noise_clip, args.target_noise_clip)
    next_actions = (next_actions + noise).clamp(-1.0, 1.0)
    next_q = critic_target(next_obs, next_actions).min(dim=0).values  # clipped double Q, (B,)
    return batch["rewards"] + args.gamma * (1.0 - batch["terminals"]) * next_q  # (B,)


def update_critic(critic, critic_target, actor_target, critic_opt, batch: dict, args) -> dict:
    """One TD step of both critics towards the same target y (the targets move with the actor)."""
    target_q = td3_target(critic_target, actor_target, batch, args)  # (B,)
    q = critic(batch["obs"], batch["actions"])  # (2, B)
    # mean over both critics and the batch (Fujimoto's code sums the two critics' losses: a factor
    # 2 that Adam does not see)
    loss = F.mse_loss(q, target_q.expand_as(q))
    critic_opt.zero_grad(set_to_none=True)
    backward(loss)
    critic_opt.step()
    return {"qf_loss": loss.detach(), "qf_mean": q.detach().mean()}


def linearised_q(critic, obs: torch.Tensor, actions: torch.Tensor, dqda_clip: float):
    """The deterministic policy gradient with dQ/da clipping (App. B), as one differentiable value.

    Q_1 to first order around a0 = pi(s): Q_1(s, a0) + g . (a - a0), g = dQ_1/da at a0, each
    component clipped to [-dqda_clip, dqda_clip] when dqda_clip > 0 (rlax.dpg_loss's elementwise
    clip, which Acme's JAX agents use; its TF DDPG/D4PG clip the norm instead). Its value is
    Q_1(s, pi(s)) and its gradient through pi is g . dpi/dtheta: the DPG, with the clipped slope.
    Returns that (B,), Q_1(s, pi(s)) detached (B,) and g before clipping (B, A)."""
    q = critic(obs, actions)[0]  # (B,): TD3's actor follows the FIRST critic only
    # (B, A): dQ_1/da at a0 = pi(s), through the critic alone (its weights and the actor get no gradient
    # from it); taken w.r.t. pi(s) itself, not a copy made to require grad, which torch < 2.13 cannot compile
    (dqda,) = gradient(q.sum(), [actions])
    slope = dqda.clamp(-dqda_clip, dqda_clip) if dqda_clip > 0 else dqda
    a0 = actions.detach()
    return q.detach() + (slope * (actions - a0)).sum(-1), q.detach(), dqda


def actor_loss(critic, batch: dict, actions: torch.Tensor, target_actions: torch.Tensor, lagrange_param: torch.Tensor,
               algo: str, dqda_clip: float, args) -> dict:
    """The loss of one actor step (with its graph, under "actor_loss") and the terms worth logging.
    `actions` = pi(s) (B, A), `target_actions` = pi'(s) (B, A)."""
    q_lin, q, dqda = linearised_q(critic, batch["obs"], actions, dqda_clip)  # (B,), (B,), (B, A)
    # D of Eq. 4, how far the actor is from its target policy: the squared l2 norm over the action
    # dimensions ("we use the l2 norm as the constraint"), averaged over states
    policy_change = (actions - target_actions.detach()).pow(2).sum(-1).mean()
    terms = {"policy_change": policy_change.detach(), "dqda_abs": dqda.abs().mean()}
    if algo == "td3bc":
        # TD3+BC (Eq. 3; Fujimoto & Gu's code): lambda = alpha / mean|Q| rescales the Q term to the
        # BC term's scale; q is detached, so lambda is a constant of this step
        lam = args.bc_alpha / q.abs().mean()
        bc_loss = F.mse_loss(actions, batch["actions"])  # mean over batch AND action dimensions (their code)
        loss = -lam * q_lin.mean() + bc_loss
        terms.update({"bc_loss": bc_loss.detach(), "td3bc_lambda": lam})
    elif algo == "td3c":
        # TD3-C (Eq. 5, our reading): maximise Q subject to D <= epsilon through the Lagrangian
        # -Q + lambda D; lambda is held fixed here (detached) and takes its own step in update_lagrange
        loss = -q_lin.mean() + F.softplus(lagrange_param).detach() * policy_change
    else:  # plain TD3 (Eq. 2)
        loss = -q_lin.mean()
    terms.update({"actor_loss": loss})
    return terms


def lagrange_loss(lagrange_param: torch.Tensor, policy_change: torch.Tensor, epsilon: float) -> torch.Tensor:
    """lambda (epsilon - D), lambda = softplus(p) >= 0, minimised over p: its gradient moves lambda
    up while D > epsilon (the constraint is violated) and down while D < epsilon. (Eq. 5 as printed,
    lambda [epsilon - D] subtracted from Q and minimised over lambda, would send lambda to infinity
    whenever D < epsilon; this is the standard dual step of the constrained problem of Eq. 4.)"""
    return F.softplus(lagrange_param) * (epsilon - policy_change.detach())


def update_lagrange(lagrange_param: torch.Tensor, lagrange_opt, policy_change: torch.Tensor, epsilon: float) -> None:
    loss = lagrange_loss(lagrange_param, policy_change, epsilon)
    lagrange_opt.zero_grad(set_to_none=True)
    backward(loss, inputs=[lagrange_param])  # (its only leaf; named so --compile can trace this step)
    lagrange_opt.step()


def update_actor(actor, actor_target, critic, lagrange_param, actor_opt, batch: dict, algo: str, dqda_clip: float,
                 args) -> dict:
    """One actor step on the critic's minibatch. Returns the logged terms, detached."""
    actions = actor(batch["obs"])  # (B, A)
    with torch.no_grad():
        target_actions = actor_target(batch["obs"])  # (B, A), pi'(s): TD3-C's anchor
    info = actor_loss(critic, batch, actions, target_actions, lagrange_param, algo, dqda_clip, args)
    actor_opt.zero_grad(set_to_none=True)
    # only the actor's weights: the critic and the multiplier get no gradient from this step
    backward(info["actor_loss"], inputs=list(actor.parameters()))
    actor_opt.step()
    info["actor_loss"] = info["actor_loss"].detach()  # (the other terms are detached already)
    return info


def actor_step_pattern(critic_steps_done: int, utd: int, delay: int) -> tuple:
    """Which of the next `utd` critic steps an actor step follows: every `delay`-th critic step,
    counted from the start of the phase (TD3's delayed policy update; Fujimoto's code: steps 2, 4, ...)."""
    return tuple((critic_steps_done + k + 1) % delay == 0 for k in range(utd))


def td3_update(actor, actor_target, critic, critic_target, lagrange_param, actor_opt, critic_opt, lagrange_opt,
               batch: dict, args, algo: str, dqda_clip: float, actor_steps: tuple) -> dict:
    """len(actor_steps) critic steps on consecutive minibatches of the sample; after the k-th, when
    actor_steps[k], one actor step on the same minibatch (and TD3-C's multiplier step), then the
    actor's and critics' targets move by tau. Returns the last values of each logged term."""
    info = {}
    with autocast(args, batch["obs"].device):  # --precision bf16 (a no-op in fp32)
        for k, with_actor in enumerate(actor_steps):
            minibatch = {key: v[k * args.batch_size:(k + 1) * args.batch_size] for key, v in batch.items()}
            info.update(update_critic(critic, critic_target, actor_target, critic_opt, minibatch, args))
            if with_actor:
                info.update(update_actor(actor, actor_target, critic, lagrange_param, actor_opt, minibatch, algo,
                                         dqda_clip, args))
                if algo == "td3c":
                    update_lagrange(lagrange_param, lagrange_opt, info["policy_change"], args.td3c_epsilon)
                # Targets move only with the actor, every `policy_delay` critic steps (Fujimoto's TD3
                # and TD3+BC; Acme's TD3, which the paper's code builds on, moves the critic targets
                # after every critic step). pi' moves here too, so TD3-C's anchor trails the actor.
                soft_update(actor_target, actor, args.tau)
                soft_update(critic_target, critic, args.tau)
    return info


# ---------------------------------------------------------------------------------------------
# The diagnostics (analysis/): Q and TD error on data the critic never trains on, the policy's
# distance from the pre-trained one
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def td3_diagnostics(critic, critic_target, actor_target, batch: dict, args) -> dict:
    """Mean Q(s, a) over both critics and the transitions, and the mean squared TD error against
    TD3's target (its smoothing noise included, as the learner's). On held-out offline data a
    falling Q after the switch is the critic forgetting the data."""
    q = critic(batch["obs"], batch["actions"])  # (2, B)
    target = td3_target(critic_target, actor_target, batch, args)  # (B,)
    return {"q": float(q.mean()), "td_error": float((q - target).pow(2).mean())}


@torch.no_grad()
def policy_distance(actor, actor_pre, obs: torch.Tensor) -> float:
    """E_s ||pi(s) - pi_pre(s)||^2: how far fine-tuning moved the policy from the pre-trained one
    (a collapse shows as a jump; TD3-C bounds each step of this by its constraint)."""
    return float((actor(obs) - actor_pre(obs)).pow(2).sum(-1).mean())


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
    # TD3+BC pre-trains offline (PHASE 1); at the switch the data is discarded, kept in the buffer
    # or retained in every batch; PHASE 2 fine-tunes online with plain TD3 (the collapse, Sec. 3),
    # TD3-C (TD3 with its policy-change constraint, Sec. 4) or TD3+BC.

    # ===== SETUP: flags, data, environments, logs (support code in wsrl_utils.py: skim it) =========
    run = Run(args, "td3c.py")
    args, device = run.args, run.device
    ckpt = None
    if args.pretrained_checkpoint:
        ckpt = read_td3_checkpoint(args.pretrained_checkpoint, device)
        use_td3_checkpoint_settings(args, ckpt)
        args.dataset_id = args.dataset_id or ckpt["args"].get("dataset_id")  # the data it was pre-trained on
    check_args(args, {"--offline-steps": (args.offline_steps, 0 if ckpt else 1), "--online-steps": (args.online_steps, 0),
                      "--offline-eval-interval": (args.offline_eval_interval, 1),
                      "--analysis-interval": (args.analysis_interval, 1), "--min-replay-size": (args.min_replay_size, 1)})
    for key, value in PAPER_NETWORKS.items():  # the paper's networks unless a flag or a checkpoint says otherwise
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.dqda_clip is None:  # App. B: dQ/da clipping is TD3-C's ("clipping: yes", Table B2), not TD3's
        args.dqda_clip = 1.0 if args.online_algo == "td3c" else 0.0
    args.dataset_id = args.dataset_id or "mujoco/hopper/medium-v0"
    domain = domain_of(args.dataset_id) if args.domain == "auto" else args.domain
    data, metadata = load_offline_data(args.dataset_id, domain)
    env_id = env_id_for(args.dataset_id, metadata, args.env_id)
    reward_transform, ref_scores = REWARD_TRANSFORMS[domain], reference_scores(env_id, metadata)
    # TD3+BC's state normalisation: the dataset's statistics, or the checkpoint's (the statistics
    # its networks were trained with), applied to the data here and to the environments below
    if ckpt is not None:
        obs_mean, obs_std = ckpt["obs_mean"].cpu().numpy(), ckpt["obs_std"].cpu().numpy()
    else:
        obs_mean, obs_std = state_statistics(data["observations"], args.normalize_states)
    if data["observations"].shape[1] != len(obs_mean):
        raise SystemExit(f"error: dataset {args.dataset_id} has {data['observations'].shape[1]}-dim observations, "
                         f"the checkpoint's state statistics {len(obs_mean)}: pass the checkpoint's --dataset-id.")
    for key in ("observations", "next_observations"):
        data[key] = ((data[key] - obs_mean) / obs_std).astype(np.float32)
    # held-out transitions (the pre-training's) that no update sees
    train_data, heldout_data = heldout_split(data, args.heldout_size, ckpt["args"]["seed"] if ckpt else args.seed)
    if args.offline_data_in_buffer and len(train_data["rewards"]) > args.buffer_size:
        raise SystemExit(f"error: --offline-data-in-buffer: the dataset's {len(train_data['rewards']):,} transitions do "
                         f"not fit the replay buffer (--buffer-size {args.buffer_size:,}); raise --buffer-size.")
    gen = run.seed()  # the replay sampler's random stream
    env = NormalizedStates(build_env(env_id, args.seed, metadata.get("spec")), obs_mean, obs_std)
    eval_env = NormalizedStates(build_env(env_id, args.seed + 10_000, metadata.get("spec"), True), obs_mean, obs_std)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    if ckpt is not None:  # before anything is built or written: its sizes, its environment, its data
        check_checkpoint_fits(ckpt, obs_dim, act_dim, env_id, "head", dataset_record(args.dataset_id, metadata))
    if train_data["observations"].shape[1] != obs_dim:
        raise SystemExit(f"error: dataset {args.dataset_id} has {train_data['observations'].shape[1]}-dim "
                         f"observations but {env_id} has {obs_dim}: pass the matching --env-id.")
    run.open_logs(env_id, metadata=metadata)
    summary = run.summary

    # ===== THE AGENT: deterministic actor, twin critics, their targets, TD3-C's multiplier ==========
    actor = DeterministicActor(obs_dim, act_dim, args.actor_hidden, args.actor_layers, args.last_hidden_init_scale,
                               args.exploration_noise).to(device)
    critic = QEnsemble(obs_dim, act_dim, args.critic_hidden, args.critic_layers, TWIN_CRITICS,
                       args.last_hidden_init_scale).to(device)
    actor_target, critic_target = copy.deepcopy(actor), copy.deepcopy(critic)  # the targets start as exact copies
    fused = adam_options(device, args)
    actor_opt = Adam(actor.parameters(), lr=args.actor_lr, **fused)
    critic_opt = Adam(critic.parameters(), lr=args.critic_lr, **fused)
    # TD3-C's multiplier lambda = softplus(p) >= 0. The paper gives neither its start nor its rate;
    # ours (docs/algorithms.md §10): 100, the scale D = 1e-5 needs (2 lambda (pi - pi') = dQ_1/da at
    # balance), and Adam at 1e-2, MPO's dual rate. It starts afresh at the switch (no meaning offline).
    lagrange_param = torch.tensor(inverse_softplus(args.lagrange_init), device=device, requires_grad=True)
    lagrange_opt = Adam([lagrange_param], lr=args.lagrange_lr, **fused)
    learner = dict(actor=actor, actor_target=actor_target, critic=critic, critic_target=critic_target, actor_opt=actor_opt,
                   critic_opt=critic_opt)  # (what a checkpoint restores)
    if ckpt is not None:  # weights and Adam states, as the pre-training left them (this run's learning rates)
        restore_td3(ckpt, **learner)

    def learn(batch: dict, algo: str, dqda_clip: float, actor_steps: tuple) -> dict:  # both phases share every state
        return td3_update(actor, actor_target, critic, critic_target, lagrange_param, actor_opt, critic_opt, lagrange_opt,
                          batch, args, algo, dqda_clip, actor_steps)

    # --cuda-graphs: recorded once per flag set (algorithm, clip, which critic steps end with an actor step)
    offline_learn, online_learn = run.graphs.wrap(learn), run.graphs.wrap(learn)
    offline_rb = ReplayBuffer.from_arrays(train_data, device)
    heldout = to_batch(heldout_data, device)  # evaluation only: never sampled for training
    del data, train_data, heldout_data  # from here on the offline data lives in offline_rb alone

    def log_analysis(prefix: str, step: int, batches: dict, actor_pre=None) -> None:
        # Q and TD error on held-out (and online) data; online, the distance from pi_pre
        for name, batch in batches.items():
            run.log(prefix, {f"{k}_{name}": v for k, v in td3_diagnostics(critic, critic_target, actor_target, batch,
                                                                           args).items()}, step)
        if actor_pre is not None:
            for name, batch in batches.items():
                run.writer.add_scalar(f"analysis/policy_distance_{name}", policy_distance(actor, actor_pre, batch["obs"]), step)

    print(f"TD3+BC, then {ALGO_NAMES[args.online_algo]} on {env_id} | {device}, {args.precision} | data {args.dataset_id}: "
          f"{offline_rb.size:,} transitions (+{len(heldout['rewards']):,} held out) | states "
          f"{'normalised' if args.normalize_states else 'as they are'} | logs: {run.run_dir}")
    run.start(eval_env, offline_evals=True)
    info, step = {}, 0

    # ===== PHASE 1: OFFLINE PRE-TRAINING WITH TD3+BC =============================================
    if ckpt is None:
        print(f"===== PHASE 1: TD3+BC offline, {args.offline_steps:,} gradient steps =====")
        with run.stoppable("offline", saving="the checkpoint so far"):
            for step in run.steps(1, args.offline_steps):
                # one critic step per gradient step, the actor every `policy_delay`-th; no dQ/da
                # clipping offline (TD3+BC as published)
                pattern = actor_step_pattern(step - 1, 1, args.policy_delay)
                info.update(offline_learn(offline_rb.sample((args.batch_size,), gen), algo="td3bc", dqda_clip=0.0,
                                          actor_steps=pattern))
                if summary["first_losses"] is None:
                    summary["first_losses"] = {k: float(v) for k, v in info.items()}
                if step % 100 == 0 or step == args.offline_steps:
                    run.log_losses("offline/losses/", info, step, "offline")
                if step % args.offline_eval_interval == 0 or step == args.offline_steps:
                    run.log_eval("offline/", step, evaluate(actor, eval_env, args.eval_episodes, ref_scores),
                                 summary["offline_evals"])
                    log_analysis("offline/analysis/", step, {"heldout": heldout})
                if step % 1000 == 0 or step == args.offline_steps:
                    run.progress(step, args.offline_steps, run.start_time, (run.start_time, 0), float("nan"),
                                 summary["offline_evals"], info, phase="offline", tag="offline/SPS")
        # the hand-over to fine-tuning, here or in another run (--pretrained-checkpoint)
        path = summary["pretrained_checkpoint"] = os.path.join(run.run_dir, f"{args.exp_name}_pretrained.pt")
        save_td3_checkpoint(path, args, step, **learner, lagrange_param=lagrange_param, lagrange_opt=lagrange_opt,
                            obs_mean=obs_mean, obs_std=obs_std, env_id=env_id, complete=not run.interrupted,
                            planned_steps=args.offline_steps, dataset=run.dataset)
        print(f"pre-trained checkpoint: {path}")
    else:
        print(f"===== PHASE 1 skipped: starting from {args.pretrained_checkpoint} =====")

    # ===== THE SWITCH: where the offline data goes ===============================================
    actor_pre = copy.deepcopy(actor).requires_grad_(False)  # pi_pre, frozen: analysis/policy_distance_*
    rb = ReplayBuffer(obs_dim, act_dim, args.buffer_size, device)
    if args.offline_data_in_buffer:  # Sec. 3.2: the online buffer starts as the dataset, sampled uniformly
        offline_part = offline_rb.state_dict()
        offline_part["pos"] = offline_part["size"] % args.buffer_size  # online data goes after it (FIFO once full)
        rb.load_state_dict(offline_part)
        print(f"offline data IN THE BUFFER: {rb.size:,} transitions, sampled uniformly with the online ones")
    retained = offline_rb if args.offline_ratio > 0 else None  # App. C.1: a fixed share of every batch
    if retained is not None:
        print(f"offline data RETAINED: {args.offline_ratio:.0%} of every online batch comes from it")
    elif not args.offline_data_in_buffer:
        print("offline data DISCARDED: online batches come from the online buffer only")
    del offline_rb  # without retention nothing refers to the dataset any more: it is gone

    # ===== PHASE 2: ONLINE FINE-TUNING ===========================================================
    # Acme's "minimum replay size" (Table B1: 1,000): the pre-trained policy, with exploration noise,
    # acts alone until the buffer holds that many transitions; preloaded data counts.
    learning_starts = max(0, args.min_replay_size - rb.size - 1)  # no update up to this step
    algo, pretrain_interrupted = args.online_algo, run.interrupted  # a Ctrl-C in phase 1 ends the run
    step, critic_steps, last_return = 0, 0, float("nan")  # the online phase counts its own steps
    if not pretrain_interrupted:
        print(f"===== PHASE 2: {ALGO_NAMES[algo]} online, {args.online_steps:,} environment steps "
              f"(first update after step {learning_starts:,}) =====")
        info = {}
        # step 0 = the pre-trained agent, so every online curve starts at the offline result
        run.log_eval("", 0, evaluate(actor, eval_env, args.eval_episodes, ref_scores), summary["evals"])
        log_analysis("analysis/", 0, {"heldout": heldout}, actor_pre)
        obs, _ = env.reset(seed=args.seed)
        online_start, updates_start = time.time(), None
        with run.stoppable("online"):
            for step in run.steps(1, args.online_steps):
                action = actor.act(obs, deterministic=False)  # pi(s) + N(0, 0.1^2), from step 1
                (o, a, r, next_o, terminated, ended), obs, episode = env_step(env, obs, action)
                rb.add(o, a, reward_transform(r), next_o, terminated, ended)
                last_return = run.log_episode(episode, step, last_return)

                if step > learning_starts:  # one gradient step per environment step (Sec. 3.1), `utd` critic steps
                    updates_start = updates_start or (time.time(), step)
                    pattern = actor_step_pattern(critic_steps, args.utd, args.policy_delay)
                    batch = sample_batch(rb, retained, args.utd, args.batch_size, args.offline_ratio, gen)
                    info.update(online_learn(batch, algo=algo, dqda_clip=args.dqda_clip, actor_steps=pattern))
                    critic_steps += args.utd
                    if summary["first_losses"] is None:
                        summary["first_losses"] = {k: float(v) for k, v in info.items()}
                    if step % 100 == 0 or step == args.online_steps:
                        run.log("losses/", info, step)
                        if algo == "td3c":
                            run.writer.add_scalar("losses/lagrange_multiplier", float(F.softplus(lagrange_param.detach())), step)
                        stop_if_diverged(info, step, "online", run.writer)
                if step % args.analysis_interval == 0:
                    online = sample_newest(rb, min(step, rb.size), args.batch_size, gen)  # the online transitions only
                    log_analysis("analysis/", step, {"heldout": heldout, "online": online}, actor_pre)
                if step % args.eval_interval == 0 or step == args.online_steps:
                    run.log_eval("", step, evaluate(actor, eval_env, args.eval_episodes, ref_scores), summary["evals"])
                if step % 1000 == 0 or step == args.online_steps:
                    summary["sps"] = run.progress(step, args.online_steps, online_start, updates_start, last_return,
                                                  summary["evals"], info, phase="online")

    # ===== SAVE =================================================================================
    if args.save_model and not pretrain_interrupted:  # a cut-short pre-training has no fine-tuned agent to save
        path = summary["checkpoint"] = os.path.join(run.run_dir, f"{args.exp_name}.pt")
        save_td3_checkpoint(path, args, step, **learner, lagrange_param=lagrange_param, lagrange_opt=lagrange_opt,
                            obs_mean=obs_mean, obs_std=obs_std, env_id=env_id, complete=step == args.online_steps,
                            planned_steps=args.online_steps, dataset=run.dataset)
    if summary["offline_evals"]:
        save_curve(os.path.join(run.run_dir, "offline_eval_curve.png"), summary["offline_evals"],
                   f"TD3+BC offline on {args.dataset_id}")
    if summary["evals"]:
        save_curve(os.path.join(run.run_dir, "eval_curve.png"), summary["evals"], f"{ALGO_NAMES[algo]} on {env_id}",
                   {"updates start": learning_starts})
    return run.finish(step, env, eval_env)


if __name__ == "__main__":
    main(tyro.cli(Args))
