"""grid.plan_grid, the job grid of `xadbench run` and the studies: classes × methods × seeds, the
reference maps first, the seed policy, and no Outlier Exposure where a method cannot use it."""
from xadbench.grid import SENSITIVE_SEEDS, plan_grid
from xadbench.registry import methods


def keys(specs):
    return [(s.class_name, s.method, s.seed) for s in specs]


def test_reference_maps_first_then_each_method_with_the_seed_policy():
    specs = plan_grid(["wood", "cap"], ["grad", "ae"], references=True, dataset="synthetic", preset="cpu")
    assert methods.get("grad").seed_sensitive and not methods.get("ae").seed_sensitive
    references = [(c, m, 0) for c in ("wood", "cap") for m in ("centre", "pixelstats")]
    trained = [(c, m, s) for c in ("wood", "cap") for m, seeds in (("grad", SENSITIVE_SEEDS), ("ae", (0,)))
               for s in seeds]
    assert keys(specs) == references + trained
    assert len({s.job_id for s in specs}) == len(specs) and all(len(s.job_id) == 16 for s in specs)


def test_given_seeds_apply_to_every_job_and_params_to_their_method():
    specs = plan_grid(["wood"], ["pixelstats", "fcdd"], seeds=[3, 4], params={"fcdd": (("epochs", 2),)},
                      references=True, dataset="synthetic", preset="paper")
    # the added reference map is deterministic: it runs once, with the first seed; the methods
    # asked for (pixelstats among them) run with every seed
    assert keys(specs) == [("wood", "centre", 3), ("wood", "pixelstats", 3), ("wood", "pixelstats", 4),
                           ("wood", "fcdd", 3), ("wood", "fcdd", 4)]
    assert [s.params for s in specs] == [()] * 3 + [(("epochs", 2),)] * 2
    assert all(s.preset == "paper" for s in specs)


def test_paper_preset_runs_one_seed_and_a_nominal_only_method_drops_the_outlier_exposure():
    specs = plan_grid(["wood"], ["grad", "ae"], dataset="synthetic", preset="paper", oe="cifar10", oe_limit=8)
    assert keys(specs) == [("wood", "grad", 0), ("wood", "ae", 0)]
    grad, ae = specs
    assert (grad.oe, grad.oe_limit) == ("cifar10", 8) and (ae.oe, ae.oe_limit) == (None, None)
