"""The optimizers of torch.optim beyond the guide's: NAdam, RAdam, Adamax, Adafactor, and Muon for the
hidden matrices with AdamW for the rest. Each with torch's documented defaults (Muon: its
documentation's recipe); the factories are dotted names, so listing imports no torch."""

from mtbench import OptimizerPreset, Param, SearchDim, hookimpl, standard_params

__all__ = ["mtbench_optimizers"]

_POSITIVE = Param(float, 0.0, None, low_open=True)
_NONNEGATIVE = Param(float, 0.0, None)
_UNIT = Param(float, 0.0, 1.0, high_open=True)


@hookimpl
def mtbench_optimizers():
    return [
        OptimizerPreset(
            name="nadam", title="NAdam", factory="torch.optim:NAdam", origin="torch", order=101,
            defaults={"lr": 0.002, "betas": (0.9, 0.999), "eps": 1e-8, "momentum_decay": 0.004},
            params={"momentum_decay": _NONNEGATIVE, "decoupled_weight_decay": Param(bool),
                    **standard_params("weight_decay")},
            description=(
                "Adam with Nesterov momentum (Dozat 2016): the first moment looks one step ahead, which "
                "often converges a little faster than Adam at the same settings. torch's defaults (lr 2e-3, "
                "momentum decay 4e-3). Try it where Adam works and you want a cheap improvement."
            ),
        ),
        OptimizerPreset(
            name="radam", title="RAdam", factory="torch.optim:RAdam", origin="torch", order=102,
            defaults={"lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-8},
            params={"decoupled_weight_decay": Param(bool), **standard_params("weight_decay")},
            description=(
                "Rectified Adam (Liu et al. 2020): damps the adaptive step while the second-moment estimate "
                "is still noisy, a built-in warm-up. Use it instead of Adam when a run is unstable in its "
                "first steps and you do not want to tune a warm-up. torch's defaults."
            ),
        ),
        OptimizerPreset(
            name="adamax", title="Adamax", factory="torch.optim:Adamax", origin="torch", order=103,
            defaults={"lr": 0.002, "betas": (0.9, 0.999), "eps": 1e-8},
            params=standard_params("weight_decay"),
            description=(
                "Adam with the infinity norm in place of the second moment (Kingma & Ba 2015, section 7): "
                "steps bounded by lr, robust to rare large gradients. torch's defaults (lr 2e-3). A variant "
                "to try where Adam's steps blow up on outlier batches."
            ),
        ),
        OptimizerPreset(
            name="adafactor", title="Adafactor", factory="torch.optim:Adafactor", origin="torch", order=104,
            defaults={"lr": 0.01, "beta2_decay": -0.8, "d": 1.0, "weight_decay": 0.0},
            params={"beta2_decay": Param(float, None, 0.0), "d": _POSITIVE},
            description=(
                "Adafactor (Shazeer & Stern 2018): a factored second moment (row and column statistics of "
                "each matrix), so its state is far smaller than Adam's, with update clipping (d) and a "
                "decaying beta2. torch's defaults (lr 1e-2). For large models where optimizer memory counts."
            ),
        ),
        OptimizerPreset(
            name="muon", title="Muon + AdamW", factory="mtbench_plugins.zoo_factories:muon_with_adamw",
            groups="mtbench.training.optimizers:hidden_matrices", origin="torch", order=105,
            defaults={"lr": 0.02, "momentum": 0.95, "weight_decay": 0.1, "nesterov": True, "ns_steps": 5,
                      "adamw_lr": 3e-4, "adamw_betas": (0.9, 0.95), "adamw_weight_decay": 0.01},
            params={"ns_steps": Param(int, 1, 99), "adamw_lr": _POSITIVE, "adamw_eps": _POSITIVE,
                    "adamw_betas": Param(tuple, 0.0, 1.0, high_open=True, length=2),
                    "adamw_weight_decay": _NONNEGATIVE},
            search_space={"lr": SearchDim(0.002, 0.2, log=True), "adamw_lr": SearchDim(3e-5, 3e-3, log=True)},
            description=(
                "Muon (Jordan et al. 2024; torch.optim.Muon): momentum orthogonalised by Newton-Schulz "
                "iterations, for the hidden layers' weight matrices (convolution filters as [out, in*k*k]); "
                "the stem convolution, biases, norms and task heads get AdamW, as torch's documentation "
                "prescribes. Settings of Muon's recipe (lr 0.02, momentum 0.95, Nesterov); adamw_* are "
                "AdamW's. Try it for fast training of the trunk; both lrs are tuned."
            ),
        ),
    ]
