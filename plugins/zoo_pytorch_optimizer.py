"""Optimizers of the pytorch-optimizer library (Apache-2.0, pinned in pyproject.toml), each with the
library's documented defaults: Lion, ADOPT, SOAP, Shampoo, Prodigy, D-Adaptation Adam, LAMB,
Schedule-Free AdamW and SGD, SAM (SGD and AdamW bases), AdEMAMix, MARS, Adan, AdaBelief.

The factories are dotted names, imported when a run builds the optimizer: listing imports neither
torch nor pytorch_optimizer. Any other optimizer of the library runs by name without a preset
(``--optimizer pytorch_optimizer:NAME``, see mtbench.presets.library).
"""

from mtbench import OptimizerPreset, Param, SearchDim, hookimpl

__all__ = ["mtbench_optimizers"]

_POSITIVE = Param(float, 0.0, None, low_open=True)
_NONNEGATIVE = Param(float, 0.0, None)
_BETAS3 = Param(tuple, 0.0, 1.0, high_open=True, length=3)
_BN_BATCHES = Param(int, 0, 10_000, what="a number of batches")
_PO = "pytorch-optimizer"
_FACTORIES = "mtbench_plugins.zoo_factories"


def _preset(name: str, title: str, factory: str, order: int, defaults: dict, description: str, **more):
    return OptimizerPreset(name=name, title=title, factory=factory, origin=_PO, order=order, defaults=defaults,
                           description=description, **more)


@hookimpl
def mtbench_optimizers():
    return [
        _preset("lion", "Lion", f"{_FACTORIES}:Lion", 201,
                {"lr": 1e-4, "betas": (0.9, 0.99), "weight_decay": 0.0},
                "Lion (Chen et al. 2023): the sign of an interpolated momentum, one state tensor (half Adam's "
                "memory). Its steps all have size lr, so it wants an lr 3-10x below AdamW's and a weight "
                "decay 3-10x above; the library's defaults (lr 1e-4)."),
        _preset("adopt", "ADOPT", f"{_FACTORIES}:adopt", 202,
                {"lr": 1e-3, "betas": (0.9, 0.9999), "eps": 1e-6, "weight_decay": 0.0},
                "ADOPT (Taniguchi et al. 2024): Adam with the second moment of the previous step and the "
                "momentum taken after normalisation, which makes it converge for any beta2. A drop-in for "
                "Adam where Adam diverges or needs a tuned beta2; the library's defaults."),
        _preset("soap", "SOAP", f"{_FACTORIES}:SOAP", 203,
                {"lr": 3e-3, "betas": (0.95, 0.95), "weight_decay": 0.01, "precondition_frequency": 10},
                "SOAP (Vyas et al. 2024): Adam run in the eigenbasis of Shampoo's preconditioner, refreshed "
                "every precondition_frequency steps. Fewer steps than Adam to a loss, at a higher cost per "
                "step (eigendecompositions of each layer's factors); the library's defaults.",
                params={"precondition_frequency": Param(int, 1, 10_000)}),
        _preset("shampoo", "Shampoo", f"{_FACTORIES}:Shampoo", 204,
                {"lr": 1e-3, "momentum": 0.0, "weight_decay": 0.0, "preconditioning_compute_steps": 1},
                "Shampoo (Gupta et al. 2018): a Kronecker-factored full-matrix preconditioner per layer "
                "(inverse fourth roots of the factors). Second-order-like steps at a high cost per step on "
                "large layers; raise preconditioning_compute_steps to refresh them less often.",
                params={"preconditioning_compute_steps": Param(int, 1, 10_000)}),
        _preset("prodigy", "Prodigy", f"{_FACTORIES}:Prodigy", 205,
                {"lr": 1.0, "betas": (0.9, 0.999), "d_coef": 1.0, "weight_decay": 0.0},
                "Prodigy (Mishchenko & Defazio 2024): Adam whose step size D is estimated on the fly, "
                "learning-rate free: lr stays 1.0 and d_coef scales the estimate (0.5 for smaller steps, 2 "
                "for larger). Use it when there is no budget to tune an lr; tune searches d_coef.",
                params={"d_coef": _POSITIVE, "d0": _POSITIVE},
                search_space={"d_coef": SearchDim(0.1, 10.0, log=True)}),
        _preset("dadapt_adam", "D-Adaptation Adam", f"{_FACTORIES}:DAdaptAdam", 206,
                {"lr": 1.0, "betas": (0.9, 0.999), "d0": 1e-6, "weight_decay": 0.0},
                "D-Adaptation Adam (Defazio & Mishchenko 2023): Adam with the step size estimated from the "
                "distance to the solution, learning-rate free (lr stays 1.0, a multiplier of the estimate). "
                "Its one knob is d0, the initial estimate, which tune searches; Prodigy is its successor.",
                params={"d0": _POSITIVE}, search_space={"d0": SearchDim(1e-8, 1e-4, log=True)}),
        _preset("lamb", "LAMB", f"{_FACTORIES}:Lamb", 207,
                {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-6, "weight_decay": 0.0},
                "LAMB (You et al. 2020): AdamW with a per-layer trust ratio (the weights' norm over the "
                "update's), made for very large batches. At batch 8 it behaves like a layer-normalised Adam; "
                "the library's defaults (gradients clipped to norm 1)."),
        _preset("schedulefree_adamw", "Schedule-Free AdamW", f"{_FACTORIES}:ScheduleFreeAdamW", 208,
                {"lr": 2.5e-3, "betas": (0.9, 0.999), "weight_decay": 0.0, "warmup_steps": 0, "bn_batches": 8},
                "Schedule-Free AdamW (Defazio et al. 2024): no lr schedule; it trains at one point and "
                "evaluates at an average of the iterates, so runs of any length need no decay. Evaluated and "
                "checkpointed at the average (optimizer.eval()), with the BatchNorm statistics recomputed "
                "there over bn_batches training batches. Use it with --schedule constant.",
                params={"warmup_steps": Param(int, 0, None), "bn_batches": _BN_BATCHES}, needs={"train_eval"}),
        _preset("schedulefree_sgd", "Schedule-Free SGD", f"{_FACTORIES}:ScheduleFreeSGD", 209,
                {"lr": 1.0, "momentum": 0.9, "weight_decay": 0.0, "warmup_steps": 0, "bn_batches": 8},
                "Schedule-Free SGD (Defazio et al. 2024): SGD with iterate averaging in place of a schedule, "
                "evaluated at the average like Schedule-Free AdamW (BatchNorm statistics recomputed over "
                "bn_batches batches). The library's defaults (lr 1.0, as the paper's); tune the lr.",
                params={"warmup_steps": Param(int, 0, None), "bn_batches": _BN_BATCHES}, needs={"train_eval"}),
        _preset("sam_sgd", "SAM (SGD)", f"{_FACTORIES}:sam_sgd", 210,
                {"rho": 0.05, "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4},
                "Sharpness-Aware Minimization (Foret et al. 2021) around the guide's SGD: each step first "
                "climbs rho along the gradient, then steps with the gradient found there, seeking flat "
                "minima that generalise better. Two forward and backward passes per step (step(closure)); "
                "rho 0.05 as the paper's.",
                params={"rho": _NONNEGATIVE, "adaptive": Param(bool), "nesterov": Param(bool)},
                needs={"closure"}),
        _preset("sam_adamw", "SAM (AdamW)", f"{_FACTORIES}:sam_adamw", 211,
                {"rho": 0.05, "lr": 1e-3, "betas": (0.9, 0.999), "weight_decay": 0.01},
                "Sharpness-Aware Minimization around the guide's AdamW: the perturbation of SAM, the update of "
                "AdamW. Twice the cost of AdamW per step (two passes, step(closure)); set adaptive=true for "
                "ASAM's scale-invariant neighbourhood.",
                params={"rho": _NONNEGATIVE, "adaptive": Param(bool), "eps": _POSITIVE}, needs={"closure"}),
        _preset("ademamix", "AdEMAMix", f"{_FACTORIES}:AdEMAMix", 212,
                {"lr": 1e-3, "betas": (0.9, 0.999, 0.9999), "alpha": 5.0, "weight_decay": 0.0},
                "AdEMAMix (Pagliardini et al. 2024): Adam plus a second, very slow momentum (beta3 0.9999) "
                "mixed in with weight alpha, which keeps using gradients thousands of steps old. Pays off on "
                "long runs; on a few hundred steps the slow average barely moves.",
                params={"betas": _BETAS3, "alpha": _NONNEGATIVE}),
        _preset("mars", "MARS", f"{_FACTORIES}:MARS", 213,
                {"lr": 3e-3, "betas": (0.95, 0.99), "gamma": 0.025, "weight_decay": 0.0},
                "MARS (Yuan et al. 2024): variance reduction (a scaled gradient correction, gamma) on top of "
                "AdamW's preconditioning, for a smoother descent direction; the library's defaults (the "
                "AdamW variant, 1-D parameters with plain AdamW).",
                params={"gamma": _NONNEGATIVE}),
        _preset("adan", "Adan", f"{_FACTORIES}:Adan", 214,
                {"lr": 1e-3, "betas": (0.98, 0.92, 0.99), "weight_decay": 0.0},
                "Adan (Xie et al. 2022): Nesterov momentum estimated from gradient differences, three moments; "
                "strong results on vision models with larger lrs than Adam. The library's defaults.",
                params={"betas": _BETAS3, "eps": _POSITIVE}),
        _preset("adabelief", "AdaBelief", f"{_FACTORIES}:AdaBelief", 215,
                {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-16, "weight_decay": 0.0},
                "AdaBelief (Zhuang et al. 2020): Adam scaled by the variance of the gradient around its "
                "momentum (the 'belief'), taking large steps where the gradient is predictable. Adam's speed "
                "with SGD-like generalisation in its paper; the library's defaults (decoupled weight decay)."),
    ]

