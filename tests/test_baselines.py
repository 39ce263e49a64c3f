"""The paper's Fig. 7 baselines: IQL, CQL and Cal-QL with the networks of their original papers
(2 Q-functions, no LayerNorm in actor or critics), beside the 10-critic LayerNorm versions
(Fig. 9 / App. M). `--layer-norm False` builds them; a checkpoint says which it holds."""
import glob
import os

import numpy as np
import torch
import torch.nn as nn

import calql_offline as C
import wsrl_calql_sac as W
import wsrl_iql_sac as I
import wsrl_utils as U
from conftest import write_random_dataset


def test_a_critic_without_layer_norm_is_relu_dense_layers_by_hand():
    torch.manual_seed(0)
    critic = W.QEnsemble(3, 2, 8, 2, 2, layer_norm=False)
    assert not any("norms" in name for name, _ in critic.named_parameters())
    obs, act = torch.randn(5, 3), torch.randn(5, 2)
    x = torch.cat([obs, act], -1)
    for member in range(2):  # each member: relu(x W0 + b0) -> relu(. W1 + b1) -> . Wh + bh, its own weights
        h = x
        for lin in critic.linears:
            h = torch.clamp(h @ lin.weight[member] + lin.bias[member], min=0.0)
        q = (h @ critic.head.weight[member] + critic.head.bias[member]).squeeze(-1)
        assert torch.allclose(critic(obs, act)[member], q, atol=1e-6)
    # with LayerNorm the same weights give other values: the flag changes the function, not only the names
    with_norm = W.QEnsemble(3, 2, 8, 2, 2)
    with_norm.load_state_dict(critic.state_dict(), strict=False)
    assert not torch.allclose(with_norm(obs, act), critic(obs, act))


def test_an_actor_without_layer_norm_has_none_and_draws_the_same_weights():
    torch.manual_seed(0)
    plain = W.Actor(4, 2, 8, 2, layer_norm=False)
    torch.manual_seed(0)
    normed = W.Actor(4, 2, 8, 2)
    assert not any(isinstance(m, nn.LayerNorm) for m in plain.modules())
    assert sum(isinstance(m, nn.LayerNorm) for m in normed.modules()) == 2
    linears = lambda a: [m.weight for m in a.trunk if isinstance(m, nn.Linear)]  # noqa: E731
    assert all(torch.equal(p, q) for p, q in zip(linears(plain), linears(normed)))  # the same random draws


def test_a_checkpoint_says_whether_its_networks_have_layer_norm():
    for layer_norm in (True, False):
        critic = W.QEnsemble(3, 2, 8, 2, 2, layer_norm=layer_norm)
        actor = W.Actor(3, 2, 8, 2, layer_norm=layer_norm)
        ckpt = {"critic": critic.state_dict(), "actor": actor.state_dict(),
                "args": dict(num_qs=2, critic_hidden=8, critic_layers=2, actor_hidden=8, actor_layers=2,
                             last_hidden_init_scale=0.01)}  # an older checkpoint: no layer_norm among its args
        args = W.Args()
        U.use_checkpoint_network_sizes(args, ckpt)
        assert args.layer_norm is layer_norm and args.num_qs == 2


def test_the_fig7_networks_pretrain_and_fine_tune_without_data(sandbox, short_episodes):
    """Cal-QL, CQL and IQL as their papers: offline then online without the data, in one run each;
    the checkpoint carries no LayerNorm and 2 critics, and WSRL can start from it."""
    dataset = write_random_dataset(W)
    tiny = dict(dataset_id=dataset, offline_steps=20, online_steps=60, num_qs=2, layer_norm=False, critic_hidden=16,
                actor_hidden=16, batch_size=16, eval_interval=60, eval_episodes=1, offline_eval_interval=20,
                heldout_size=10, save_model=True)
    C.main(C.Args(exp_name="calql2q", offline_ratio=0.0, **tiny))
    C.main(C.Args(exp_name="cql2q", calql=False, offline_ratio=0.0, **tiny))
    I.main(I.Args(exp_name="iql2q", online_algo="iql", warmup_steps=0, **tiny))
    for name in ("calql2q", "cql2q", "iql2q"):
        (path,) = glob.glob(f"runs/*__{name}__1__*/{name}_pretrained.pt")
        ckpt = torch.load(path, weights_only=True)
        assert not any(k.startswith("norms.") for k in ckpt["critic"]) and ckpt["critic"]["head.weight"].shape[0] == 2
        assert ckpt["args"]["layer_norm"] is False
        assert np.isfinite(ckpt["critic"]["head.weight"].numpy()).all()
    (path,) = glob.glob("runs/*__calql2q__1__*/calql2q_pretrained.pt")
    W.main(W.Args(pretrained_checkpoint=path, exp_name="wsrl_from_2q", online_steps=40, warmup_steps=20,
                  batch_size=16, eval_interval=40, eval_episodes=1, heldout_size=10))
    assert glob.glob("runs/*__wsrl_from_2q__1__*/events.*")
    assert os.path.exists(path)
