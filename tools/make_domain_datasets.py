"""Small local datasets of the paper's sparse domains (AntMaze, PointMaze, FrankaKitchen, binary
Adroit), made in seconds from the real environments, laid out like Minari's `D4RL/...` ones.

They are for tests and smoke runs, not for learning: random actions, a few thousand steps, but
the very observation layouts, environment specs and reward signals that the hub's datasets
have, so every script's domain path runs on them exactly as on the real data. To make random
actions meet the goal at all, episodes start at or near it:

- antmaze / pointmaze: the data is recorded in a U-maze from the cell that the EVALUATION maze
  (stored with the dataset, as Minari's D4RL antmaze datasets store theirs) has as its goal;
  the evaluation maze starts one cell away. The recording env never ends an episode and never
  moves its goal (`continuing_task=True, reset_target=False`), as in Minari's D4RL data.
- kitchen: FrankaKitchen-v1 with D4RL's "mixed" tasks; each episode starts with 0-4 of the four
  tasks already done (their joints set to the goal after the reset).
- adroit (pen, door, relocate): half of the episodes start at the goal (pen: target orientation =
  the pen's own; door: open; relocate: target = the ball), through gymnasium-robotics's
  `reset(options={"initial_state_dict": ...})`; the other half start normally and, under random
  actions, never succeed (the scripts drop those, as the official binary Adroit data does).

    python tools/make_domain_datasets.py                 # all of them, under local/<domain>/test-v0
    python tools/make_domain_datasets.py antmaze door    # some
    python wsrl_calql_sac.py --dataset-id local/antmaze/test-v0 --offline-steps 200 --online-steps 500

One dataset here IS for learning: `umaze` (local/pointmaze/umaze-v0, the sparse-maze demo's data)
is D4RL's maze2d recipe with a scripted body. A planner (breadth-first search over the maze's
cells) names the next cell on the shortest path to the current goal, a PD controller steers the
point towards that cell's centre (action = 10 (waypoint - position) - velocity, as Minari's
pointmaze data) with Gaussian noise of std 0.5 on every action, and the goal jumps to a random
cell whenever it is reached (`continuing_task=True, reset_target=True`). The data thus covers
the whole maze without ever aiming at the evaluation task (start in the bottom-left arm, goal in
the top-left one): an offline agent has to stitch it.

    python tools/make_domain_datasets.py umaze           # 100k steps, ~10 s
"""

import argparse
import os
import sys
import warnings

import gymnasium as gym
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The recording maze: the data starts in cell (1, 1); its own goal cell is irrelevant (the
# scripts relabel every reward against the evaluation maze's goal).
RECORD_MAZE = [[1, 1, 1, 1, 1], [1, "r", 0, "g", 1], [1, 1, 1, 0, 1], [1, 0, 0, 0, 1], [1, 1, 1, 1, 1]]
# The evaluation maze: the goal where the data starts, the start one cell (4 m for the ant) away.
EVAL_MAZE = [[1, 1, 1, 1, 1], [1, "g", "r", 0, 1], [1, 1, 1, 0, 1], [1, 0, 0, 0, 1], [1, 1, 1, 1, 1]]
KITCHEN_TASKS = ["microwave", "kettle", "bottom burner", "light switch"]  # D4RL's kitchen-mixed
DATASETS = {  # name: (env id, episode length, episodes)
    "antmaze": ("AntMaze_UMaze-v4", 100, 20),
    "pointmaze": ("PointMaze_UMaze-v3", 100, 20),
    "kitchen": ("FrankaKitchen-v1", 60, 20),
    "pen": ("AdroitHandPen-v1", 50, 20),
    "door": ("AdroitHandDoor-v1", 50, 20),
    "relocate": ("AdroitHandRelocate-v1", 50, 20),
}


# The demo's data (see above): the U-maze with no fixed start or goal while recording; the evaluation
# maze starts at the end of one arm, and its goal is the end of the other.
UMAZE = [[1, 1, 1, 1, 1], [1, 0, 0, 0, 1], [1, 1, 1, 0, 1], [1, 0, 0, 0, 1], [1, 1, 1, 1, 1]]
UMAZE_EVAL = [[1, 1, 1, 1, 1], [1, "g", 0, 0, 1], [1, 1, 1, 0, 1], [1, "r", 0, 0, 1], [1, 1, 1, 1, 1]]
PLANNER = dict(steps=100_000, episode_length=1000, p_gain=10.0, d_gain=-1.0, noise=0.5)


def dataset_id_of(name: str) -> str:
    return "local/pointmaze/umaze-v0" if name == "umaze" else f"local/{name}/test-v0"


def shortest_path_steps(maze_map: list, goal: tuple) -> dict:
    """{free cell (row, col): number of moves to `goal`}, by breadth-first search over the free
    cells (4-neighbourhood)."""
    steps, frontier = {goal: 0}, [goal]
    while frontier:
        nxt = []
        for r, c in frontier:
            for cell in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                if cell not in steps and maze_map[cell[0]][cell[1]] != 1:
                    steps[cell] = steps[(r, c)] + 1
                    nxt.append(cell)
        frontier = nxt
    return steps


def waypoint_action(maze, obs: dict, rng: np.random.Generator) -> np.ndarray:
    """The PD controller towards the next cell on the shortest path to the goal, plus noise."""
    pos, vel, goal = obs["achieved_goal"], obs["observation"][2:4], obs["desired_goal"]
    here, target = tuple(maze.cell_xy_to_rowcol(pos)), tuple(maze.cell_xy_to_rowcol(goal))
    steps = shortest_path_steps(maze.maze_map, target)
    if here == target:
        waypoint = goal
    else:  # the neighbouring cell one move closer to the goal
        r, c = here
        nxt = min(((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)), key=lambda cell: steps.get(cell, np.inf))
        waypoint = maze.cell_rowcol_to_xy(np.array(nxt))
    action = PLANNER["p_gain"] * (waypoint - pos) + PLANNER["d_gain"] * vel
    return np.clip(action + rng.normal(0.0, PLANNER["noise"], size=2), -1.0, 1.0)


def record_planner(seed: int = 0, steps: int = 0) -> tuple[list, gym.Env, object]:
    """The demo's data: planner + PD controller + noise, in episodes of PLANNER["episode_length"]."""
    import gymnasium_robotics
    from minari.data_collector import EpisodeBuffer

    gym.register_envs(gymnasium_robotics)
    length = PLANNER["episode_length"]
    env = gym.make("PointMaze_UMaze-v3", maze_map=UMAZE, continuing_task=True, reset_target=True,
                   max_episode_steps=length)
    eval_spec = gym.make("PointMaze_UMaze-v3", maze_map=UMAZE_EVAL, continuing_task=True, reset_target=False).spec
    rng = np.random.default_rng(seed)
    maze = env.unwrapped.maze
    buffers = []
    for i in range(-(-(steps or PLANNER["steps"]) // length)):
        obs, _ = env.reset(seed=seed + i)
        observations, actions, rewards = [obs], [], []
        for _ in range(length):
            action = waypoint_action(maze, obs, rng)
            obs, r, terminated, truncated, _ = env.step(action)
            observations.append(obs)
            actions.append(action)
            rewards.append(r)
        buffers.append(EpisodeBuffer(id=i, observations=stack(observations), actions=np.array(actions),
                                     rewards=np.array(rewards), terminations=np.zeros(length, bool),
                                     truncations=np.arange(1, length + 1) == length, infos={}))
    return buffers, env, eval_spec


def make_recording_env(name: str) -> tuple[gym.Env, object]:
    """(the env the data is recorded in, the evaluation env spec stored with it or None)."""
    import gymnasium_robotics

    gym.register_envs(gymnasium_robotics)
    env_id, length, _ = DATASETS[name]
    if name in ("antmaze", "pointmaze"):
        kwargs = dict(continuing_task=True, reset_target=False)
        env = gym.make(env_id, maze_map=RECORD_MAZE, max_episode_steps=length, **kwargs)
        eval_env = gym.make(env_id, maze_map=EVAL_MAZE, **kwargs)  # the registered episode length
        return env, eval_env.spec
    if name == "kitchen":
        env = gym.make(env_id, tasks_to_complete=KITCHEN_TASKS, remove_task_when_completed=False,
                       terminate_on_tasks_completed=False, max_episode_steps=length)
        return env, None
    return gym.make(env_id, max_episode_steps=length), None


def start_episode(name: str, env: gym.Env, episode: int, seed: int):
    """Reset for episode `episode`; returns the first observation (at or near the goal, see above)."""
    u = env.unwrapped
    if name == "kitchen":
        import mujoco
        from gymnasium_robotics.envs.franka_kitchen.kitchen_env import OBS_ELEMENT_GOALS, OBS_ELEMENT_INDICES

        env.reset(seed=seed + episode)
        for task in KITCHEN_TASKS[: episode % (len(KITCHEN_TASKS) + 1)]:  # 0, 1, 2, 3 or 4 tasks done
            u.data.qpos[OBS_ELEMENT_INDICES[task]] = OBS_ELEMENT_GOALS[task]
        mujoco.mj_forward(u.model, u.data)
        return u._get_obs(u.robot_env._get_obs())
    if name in ("pen", "door", "relocate") and episode % 2 == 0:
        env.reset(seed=seed + episode)
        state = u.get_env_state()
        if name == "pen":  # the target orientation becomes the pen's own (along x)
            state["desired_orien"] = np.array([0.7071, 0.0, 0.7071, 0.0])
        elif name == "door":  # the hinge open beyond the 1.35 that counts as success
            state["qpos"] = state["qpos"].copy()
            state["qpos"][u.door_hinge_addrs] = 1.5
        else:  # the target onto the ball; set_env_state takes these four keys only
            state = {k: state[k] for k in ("qpos", "qvel", "obj_pos", "target_pos")}
            state["target_pos"] = state["obj_pos"].copy()
        obs, _ = env.reset(seed=seed + episode, options={"initial_state_dict": state})
        return obs
    obs, _ = env.reset(seed=seed + episode)
    return obs


def stack(observations: list):
    """A list of observations (arrays, or dicts of them, nested for kitchen) -> one stacked."""
    if isinstance(observations[0], dict):
        return {k: stack([o[k] for o in observations]) for k in observations[0]}
    return np.stack(observations)


def record(name: str, seed: int = 0, episodes: int = 0) -> tuple[list, gym.Env, object]:
    from minari.data_collector import EpisodeBuffer

    env, eval_spec = make_recording_env(name)
    env.action_space.seed(seed)
    buffers = []
    for i in range(episodes or DATASETS[name][2]):
        obs = [start_episode(name, env, i, seed)]
        actions, rewards, terms, truncs = [], [], [], []
        done = False
        while not done:
            action = env.action_space.sample()
            o, r, terminated, truncated, _ = env.step(action)
            obs.append(o)
            actions.append(action)
            rewards.append(r)
            terms.append(terminated)
            truncs.append(truncated)
            done = terminated or truncated
        buffers.append(EpisodeBuffer(id=i, observations=stack(obs), actions=np.array(actions), rewards=np.array(rewards),
                                     terminations=np.array(terms), truncations=np.array(truncs), infos={}))
    return buffers, env, eval_spec


def make(name: str, seed: int = 0, overwrite: bool = False, episodes: int = 0) -> str:
    """Write local/<name>/test-v0 (skipped when it exists, unless overwrite); returns its id."""
    import minari

    dataset_id = dataset_id_of(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dataset_id in minari.list_local_datasets():
            if not overwrite:
                return dataset_id
            minari.delete_dataset(dataset_id)
        if name == "umaze":
            buffers, env, eval_spec = record_planner(seed, episodes * PLANNER["episode_length"])
            algorithm = (f"shortest-path planner + PD controller (p {PLANNER['p_gain']}, d {PLANNER['d_gain']}), "
                         f"Gaussian action noise std {PLANNER['noise']}, random goals")
            description = "the sparse-maze demo's data (tools/make_domain_datasets.py umaze)"
        else:
            buffers, env, eval_spec = record(name, seed, episodes)
            algorithm = "random actions, near-goal starts"
            description = f"test data for the {name} domain path (tools/make_domain_datasets.py)"
        minari.create_dataset_from_buffers(
            dataset_id, buffers, env=env, eval_env=eval_spec, algorithm_name=algorithm,
            author="wsrl reference scripts", author_email="n/a", code_permalink="n/a", description=description)
    return dataset_id


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", default=list(DATASETS),
                        help=f"datasets to make: {', '.join(DATASETS)} (default: these), or umaze (the demo's)")
    parser.add_argument("--seed", type=int, default=0, help="reset and action seed")
    parser.add_argument("--overwrite", action="store_true", help="remake a dataset that exists")
    args = parser.parse_args()
    unknown = [n for n in args.names if n not in DATASETS and n != "umaze"]
    if unknown:
        print(f"error: unknown dataset {', '.join(unknown)}; choose from {', '.join(DATASETS)}", file=sys.stderr)
        return 2
    for name in args.names:
        print(f"{make(name, args.seed, args.overwrite)}: {DATASETS[name][0] if name in DATASETS else 'PointMaze_UMaze-v3'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
