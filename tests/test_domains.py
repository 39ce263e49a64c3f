"""The paper's sparse domains (AntMaze, FrankaKitchen, binary Adroit, and PointMaze for the demo):
one observation and reward path for the data and the environment, laid out as the official
code has them, and every script running on each domain's local data."""

import os
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

import calql_offline as C

import wsrl_utils as U
import jsrl as J
import sac_fast as S
import wsrl_calql_sac as W
import wsrl_iql_sac as I

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
import make_domain_datasets as T  # noqa: E402

# name: (domain, observation size as the official code has it)
LAYOUTS = {"antmaze": ("antmaze", 29), "pointmaze": ("pointmaze", 4), "kitchen": ("kitchen", 30),
           "pen": ("adroit", 45), "door": ("adroit", 39), "relocate": ("adroit", 39)}


@pytest.fixture(scope="module")
def datasets(module_sandbox):
    return {name: T.make(name) for name in LAYOUTS}


class Recorder(gym.Wrapper):
    """Keeps the environment's own observations and infos, as a dataset would hold them."""

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.raw, self.infos = [obs], []
        return obs, info

    def step(self, action):
        out = self.env.step(action)
        self.raw.append(out[0])
        self.infos.append(out[4])
        return out


# ---------------------------------------------------------------------------------------------
# Layouts and relabelling of the data
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(LAYOUTS))
def test_local_datasets_load_with_the_official_layouts_and_rewards(datasets, name):
    domain, size = LAYOUTS[name]
    assert U.domain_of(datasets[name]) == domain
    data, metadata = U.load_offline_data(datasets[name], domain)
    assert data["observations"].shape[1] == data["next_observations"].shape[1] == size
    env = U.build_env(metadata["env_id"], 0, metadata["spec"])
    assert env.observation_space.shape == (size,) and env.reset(seed=0)[0].shape == (size,)
    r, term = data["rewards"], data["terminals"]
    if domain == "kitchen":  # tasks done so far, minus 4; terminal when all four are done
        assert set(np.unique(r)) <= {-4.0, -3.0, -2.0, -1.0, 0.0} and len(np.unique(r)) == 5
        np.testing.assert_array_equal(term, r == 0.0)
    else:  # goal reached: +5, else -5 (r * 10 - 5 in the mazes, (r - 1) * 10 + 5 binary adroit); terminal there
        assert set(np.unique(r)) <= {-5.0, 5.0} and (r == 5.0).any()
        np.testing.assert_array_equal(term, r == 5.0)
    if domain == "adroit":  # half the episodes (normal starts) never succeed and are dropped
        recorded = T.DATASETS[name][1] * T.DATASETS[name][2]
        assert len(r) <= recorded // 2 + 1


def test_the_planner_counts_moves_to_the_goal_over_free_cells_only():
    # the U-maze: top row (1, 1..3), the right column (2, 3), bottom row (3, 1..3); goal top-left
    steps = T.shortest_path_steps(T.UMAZE, (1, 1))
    assert steps == {(1, 1): 0, (1, 2): 1, (1, 3): 2, (2, 3): 3, (3, 3): 4, (3, 2): 5, (3, 1): 6}


def test_the_pd_controller_steers_to_the_next_cell_on_the_path(monkeypatch):
    import gymnasium_robotics

    gym.register_envs(gymnasium_robotics)
    maze = gym.make("PointMaze_UMaze-v3", maze_map=T.UMAZE).unwrapped.maze
    monkeypatch.setitem(T.PLANNER, "noise", 0.0)
    rng = np.random.default_rng(0)
    # cells are 1 m: (row, col) -> (x, y) = (col - 2, 2 - row); bottom-left (-1, -1), goal top-left (-1, 1)
    start = {"achieved_goal": np.array([-1.0, -1.0]), "observation": np.array([-1.0, -1.0, 0.0, 0.0]),
             "desired_goal": np.array([-1.0, 1.0])}
    # next cell (3, 2) at (0, -1): 10 * (1, 0) clipped to (1, 0)
    np.testing.assert_allclose(T.waypoint_action(maze, start, rng), [1.0, 0.0])
    # in the goal's cell: PD towards the goal itself, 10 * (0.05, -0.02) + (-1) * (0.1, 0.3)
    near = {"achieved_goal": np.array([-1.05, 1.02]), "observation": np.array([-1.05, 1.02, 0.1, 0.3]),
            "desired_goal": np.array([-1.0, 1.0])}
    np.testing.assert_allclose(T.waypoint_action(maze, near, rng), [0.5 - 0.1, -0.2 - 0.3], atol=1e-12)


def test_the_demo_maze_data_covers_the_maze_and_names_its_evaluation_task(module_sandbox):
    dataset_id = T.make("umaze", episodes=2)  # 2,000 steps
    assert dataset_id == "local/pointmaze/umaze-v0"
    data, metadata = U.load_offline_data(dataset_id, "pointmaze")
    assert data["observations"].shape == (2000, 4) and data["timeouts"].sum() + data["terminals"][-1:].sum() >= 1
    # the evaluation maze: one start and one goal, the ends of the U's two arms
    assert metadata["spec"].kwargs["maze_map"] == T.UMAZE_EVAL
    env = U.build_env(metadata["env_id"], 0, metadata["spec"])
    np.testing.assert_allclose(env.get_wrapper_attr("goal_xy"), [-1.0, 1.0])
    np.testing.assert_allclose(env.unwrapped.maze.unique_reset_locations, [[-1.0, -1.0]])
    # random goals all over the maze: the data visits every free cell, the evaluation goal among them
    cells = {(int(round(2 - y)), int(round(x + 2))) for x, y in data["observations"][:, :2]}
    assert set(T.shortest_path_steps(T.UMAZE, (1, 1))) <= cells
    assert (data["rewards"] == 5.0).any() and (data["rewards"] == -5.0).mean() > 0.5


def test_kitchen_data_counts_the_tasks_at_their_goal_in_each_observation(datasets):
    data, _ = U.load_offline_data(datasets["kitchen"], "kitchen")
    episodes = data["rewards"].reshape(T.DATASETS["kitchen"][2], T.DATASETS["kitchen"][1])  # all whole here
    assert sorted(set(episodes[:, 0])) == [-4.0, -3.0, -2.0, -1.0, 0.0]  # 0-4 tasks at their goal at the start
    # by hand: one task at its goal after steps 1 and 3, moved away after step 2; another after step 3 only.
    # D4RL's stored reward (what the official code trains on) is 1, 0, 2: it falls when a task is undone,
    # where the online env's "done so far" would give 1, 1, 2
    kitchen, _ = T.make_recording_env("kitchen")
    k = U.DomainWrapper(kitchen, "kitchen")
    tasks = k.tasks
    assert len(tasks) == 4
    goal = {t: np.zeros((4, 3)) for t in tasks}
    achieved = {t: np.full((4, 3), 5.0) for t in tasks}  # far from the goal ...
    achieved[tasks[0]][[1, 3]] = 0.1  # ... but within 0.3 of it here
    achieved[tasks[1]][3] = 0.0
    obs = {"observation": np.zeros((4, 59)), "achieved_goal": achieved, "desired_goal": goal}
    out = k.relabel_episode(obs, np.zeros(3), np.zeros(3, bool))
    np.testing.assert_array_equal(out["rewards"], [1.0, 0.0, 2.0])
    np.testing.assert_array_equal(out["terminals"], [False, False, False])
    assert U.build_env("FrankaKitchen-v1", 0).spec.max_episode_steps == 280  # D4RL's, not Minari's 450


def test_sparse_returns_to_go_give_failing_trajectories_the_value_of_failing_forever(datasets):
    data, _ = U.load_offline_data(datasets["antmaze"], "antmaze")
    g = W.returns_to_go(data["rewards"], data["terminals"], data["timeouts"], 0.99, W.SPARSE_NEGATIVE_REWARD["antmaze"])
    ends = np.flatnonzero(data["terminals"] | data["timeouts"]) + 1
    checked = 0
    for s, e in zip(np.r_[0, ends[:-1]], ends):
        seg = data["rewards"][s:e]
        if np.all(seg == -5.0):  # never at the goal: -5 / (1 - 0.99) everywhere, not a cut sum
            np.testing.assert_allclose(g[s:e], -500.0)
            checked += 1
        else:  # ends at the goal: the discounted sum, +5 at the last step
            assert g[e - 1] == 5.0 and np.isclose(g[s], sum(0.99 ** k * x for k, x in enumerate(seg)), rtol=1e-5)
    assert checked > 0


# ---------------------------------------------------------------------------------------------
# The data and the environment agree
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(LAYOUTS))
def test_the_online_path_and_the_data_path_agree_on_the_same_trajectory(datasets, name):
    """The same steps through DomainWrapper.step (online) and relabel_episode (offline): the same
    observations, rewards and ends (kitchen: the data's reward counts the tasks at their goal in
    the observation, the online one those done so far)."""
    domain, _ = LAYOUTS[name]
    raw_env, eval_spec = T.make_recording_env(name)
    if eval_spec is not None:  # the mazes: the evaluation maze, from next to its goal
        import gymnasium_robotics

        gym.register_envs(gymnasium_robotics)
        raw_env = gym.make(eval_spec, max_episode_steps=100)
    rec = Recorder(raw_env)
    w = U.DomainWrapper(rec, domain)
    for episode in range(4):
        if eval_spec is not None:
            first, _ = rec.reset(seed=episode, options={"reset_cell": np.array([1, 1])})
        else:
            first = T.start_episode(name, rec, episode, 0)
            rec.raw[0] = first
        w.done_tasks[:] = False
        obs, rewards, terminals = [w.flat_observation(first)], [], []
        rec.action_space.seed(episode)
        for _ in range(40):
            o, r, terminated, truncated, info = w.step(rec.action_space.sample())
            obs.append(o)
            rewards.append(r)
            terminals.append(terminated)
            if name in ("pen", "door", "relocate"):  # the flags read from the observation = the env's own success
                assert bool(info["success"]) == bool(rec.infos[-1]["success"])
            if terminated or truncated:
                break
        off = w.relabel_episode(T.stack(rec.raw), np.zeros(len(rewards)), np.zeros(len(rewards), bool))
        if off is None:  # adroit drops an episode that never succeeds: then online never did either
            assert not any(terminals)
            continue
        n = min(len(rewards), len(off["rewards"]))
        np.testing.assert_allclose(off["observations"][: n + 1], np.array(obs)[: n + 1])
        if domain == "kitchen":  # offline: tasks at their goal now; online: done so far, never fewer
            assert np.all(off["rewards"][:n] <= np.array(rewards[:n])) and np.all(off["terminals"][:n] <= terminals[:n])
            continue
        np.testing.assert_array_equal(off["rewards"][:n], rewards[:n])
        np.testing.assert_array_equal(off["terminals"][:n], terminals[:n])


def test_episodes_end_at_the_goal_online_and_success_is_reported(datasets):
    door = U.build_env("AdroitHandDoor-v1", 0)
    u = door.unwrapped
    door.reset(seed=0)
    state = u.get_env_state()
    state["qpos"] = state["qpos"].copy()
    state["qpos"][u.door_hinge_addrs] = 1.5
    door.reset(seed=0, options={"initial_state_dict": state})
    _, r, terminated, _, info = door.step(np.zeros(door.action_space.shape))
    assert (r, terminated, info["success"]) == (0.0, True, 1.0)
    kitchen, _ = T.make_recording_env("kitchen")
    k = U.DomainWrapper(kitchen, "kitchen")
    T.start_episode("kitchen", k, 4, 0)  # all four tasks done at the start
    k.done_tasks[:] = False
    _, r, terminated, _, info = k.step(np.zeros(k.action_space.shape))
    assert (r, terminated, info["success"]) == (4.0, True, 1.0)
    T.start_episode("kitchen", k, 2, 0)  # two of four
    k.done_tasks[:] = False
    _, r, terminated, _, info = k.step(np.zeros(k.action_space.shape))
    assert (r, terminated, info["success"]) == (2.0, False, 0.5)


def test_evaluate_reports_the_success_rate_and_a_score_of_100_times_it():
    class Coin(gym.Env):  # one-step episodes that succeed every other time
        observation_space = gym.spaces.Box(-1, 1, (3,))
        action_space = gym.spaces.Box(-1, 1, (1,))
        n = 0

        def reset(self, **kwargs):
            return np.zeros(3, np.float32), {}

        def step(self, action):
            self.n += 1
            return np.zeros(3, np.float32), -1.0, False, True, {"success": float(self.n % 2)}

    actor = W.Actor(3, 1, 8, 1, 0.01)
    hopper_actor = W.Actor(11, 3, 8, 1, 0.01)
    ret, score, success = W.evaluate(actor, Coin(), 4, None)
    assert (ret, score, success) == (-1.0, 50.0, 0.5)
    hopper = U.build_env("Hopper-v5", 0)
    assert W.evaluate(hopper_actor, hopper, 1, U.D4RL_REF_SCORES["hopper"])[2] is None  # no success in locomotion


def test_maze_without_one_fixed_goal_and_adroit_hammer_are_refused():
    with pytest.raises(SystemExit, match="fixed goal"):
        U.build_env("PointMaze_UMaze-v3", 0)  # the registered map: any empty cell can be the goal
    with pytest.raises(SystemExit, match="no binary version"):
        U.build_env("AdroitHandHammer-v1", 0)


# ---------------------------------------------------------------------------------------------
# Every script runs on every domain
# ---------------------------------------------------------------------------------------------
NET = dict(num_qs=3, critic_hidden=32, critic_layers=2, actor_hidden=32, actor_layers=2, batch_size=32, eval_episodes=1,
           resume_interval=0)
SMOKE = ["antmaze", "kitchen", "door", "pointmaze"]


@pytest.mark.parametrize("name", SMOKE)
def test_every_script_runs_on_the_domain(datasets, name, short_episodes):  # (Cal-QL online: updates after an episode)
    dataset_id = datasets[name]
    pre = C.main(C.Args(dataset_id=dataset_id, offline_steps=30, online_steps=0, offline_eval_interval=30, cql_n_actions=4,
                        heldout_size=50, analysis_interval=50, **NET))
    ckpt = pre["pretrained_checkpoint"]
    actor = torch.load(ckpt, weights_only=True)["actor"]
    # the mazes' policy has one learned std per action dimension, the others a std head on the state
    assert ("log_std" in actor) == (LAYOUTS[name][0] in ("antmaze", "pointmaze")) != ("log_std.weight" in actor)
    runs = [
        C.main(C.Args(pretrained_checkpoint=ckpt, online_steps=150, offline_ratio=0.5, eval_interval=150, cql_n_actions=4,
                      heldout_size=50, analysis_interval=50, **NET)),
        W.main(W.Args(dataset_id=dataset_id, offline_steps=30, online_steps=150, warmup_steps=50, offline_eval_interval=30,
                      eval_interval=150, cql_n_actions=4, heldout_size=50, analysis_interval=50, analysis_actions=4, **NET)),
        I.main(I.Args(dataset_id=dataset_id, offline_steps=30, online_steps=150, warmup_steps=50, offline_eval_interval=30,
                      eval_interval=150, heldout_size=50, analysis_interval=50, analysis_actions=4, **NET)),
        J.main(J.Args(pretrained_checkpoint=ckpt, online_steps=150, eval_interval=150, **{
            k: v for k, v in NET.items() if k not in ("critic_hidden", "critic_layers", "actor_hidden", "actor_layers")})),
        S.main(S.Args(dataset_id=dataset_id, offline_ratio=0.5, online_steps=150, learning_starts=50, eval_interval=150,
                      **NET)),
    ]
    for summary in runs:
        assert summary["evals"], summary["run_dir"]
        step, ret, score = summary["evals"][-1]
        assert step == 150 and 0.0 <= score <= 100.0  # sparse domains: 100 x the success rate
        tags = os.listdir(summary["run_dir"])
        assert any(t.startswith("events") for t in tags)


@pytest.mark.parametrize("name, flags, expected", [("antmaze", {}, (1, True)), ("door", {}, (2, False)),
                                                   ("antmaze", {"num_min_qs": 2, "max_target_backup": False}, (2, False))])
def test_rlpd_takes_the_papers_antmaze_settings_unless_told(datasets, monkeypatch, name, flags, expected):
    """The paper's RLPD (and SAC) on antmaze: min over 1 sub-sampled target critic, the best of
    10 next actions backed up; 2 and 1 elsewhere; a flag wins."""
    seen = set()
    original = S.td_target

    def td_target(critic_target, actor, alpha_param, batch, args, max_backup, noise=None):
        seen.add((args.num_min_qs, max_backup))
        return original(critic_target, actor, alpha_param, batch, args, max_backup, noise)

    monkeypatch.setattr(S, "td_target", td_target)
    S.main(S.Args(dataset_id=datasets[name], offline_ratio=0.5, online_steps=60, learning_starts=40, eval_interval=60,
                  **{**NET, **flags}))
    assert seen == {expected}
