"""Exercise checks: instant, specific feedback for students, and the scores the grader records.

`core` holds the machinery (CheckResult, run_check, strict mode); each chapter's checks live in a module of
their own and register them in its CHECKS dict. Notebooks call them as ``checks.check_<exercise>(fn)``.
"""

from .applications import CHECKS as _APPLICATIONS
from .applications import check_probe_direction, check_project
from .biggan import CHECKS as _BIGGAN
from .biggan import (
    check_conditional_batch_norm,
    check_hinge_loss,
    check_orthogonal_regularization,
    check_power_iteration,
    check_self_attention,
    check_truncated_z,
)
from .core import CheckFailed, CheckResult, Mistake, close, finite, run_check
from .evaluation import CHECKS as _EVALUATION
from .evaluation import check_frechet_distance, check_mmd2_unbiased, check_precision_recall
from .gan import CHECKS as _GAN
from .gan import check_discriminator_loss, check_ema, check_generator_loss, check_pack_samples, check_train_step
from .pggan import CHECKS as _PGGAN
from .pggan import (
    check_equalized_conv2d,
    check_fade_in,
    check_fade_in_discriminator,
    check_fade_reals,
    check_growth_stage,
    check_minibatch_stddev,
    check_pixel_norm,
)
from .stylegan import CHECKS as _STYLEGAN
from .stylegan import (
    check_adain,
    check_mapping_network,
    check_mix_styles,
    check_mixing_regularisation,
    check_modulated_conv2d,
    check_truncate_w,
)
from .stylegan_synthesis import CHECKS as _STYLEGAN_SYNTHESIS
from .stylegan_synthesis import check_constant_input, check_noise_layer
from .wgan import CHECKS as _WGAN
from .wgan import check_conditional_input, check_critic_loss, check_gradient_penalty, check_projection_logits

# exercise name -> check, for every chapter; the grader looks exercises up here
CHECKS = {**_GAN, **_WGAN, **_PGGAN, **_STYLEGAN, **_STYLEGAN_SYNTHESIS, **_EVALUATION, **_BIGGAN, **_APPLICATIONS}

__all__ = ["CHECKS", "CheckFailed", "CheckResult", "Mistake", "close", "finite", "run_check",
           "check_discriminator_loss", "check_generator_loss", "check_train_step", "check_pack_samples",
           "check_ema",
           "check_gradient_penalty", "check_critic_loss", "check_conditional_input", "check_projection_logits",
           "check_fade_in", "check_minibatch_stddev", "check_pixel_norm", "check_fade_reals", "check_growth_stage",
           "check_equalized_conv2d", "check_fade_in_discriminator",
           "check_adain", "check_mapping_network", "check_mix_styles", "check_truncate_w", "check_modulated_conv2d",
           "check_mixing_regularisation", "check_noise_layer", "check_constant_input",
           "check_frechet_distance", "check_mmd2_unbiased", "check_precision_recall",
           "check_hinge_loss", "check_conditional_batch_norm", "check_orthogonal_regularization", "check_truncated_z",
           "check_power_iteration", "check_self_attention",
           "check_probe_direction", "check_project"]
