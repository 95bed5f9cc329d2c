"""Optimizers from a config dict: Adam, AdamW and SGD (momentum, Nesterov), each with weight decay.

One cell, `RecipeOptimizer`, implements the three update rules as PyTorch (and so mmpose) defines
them, with a per-step learning-rate array (engine/schedule) and two per-parameter switches:
  * weight decay on or off (`no_decay_norm_bias` turns it off for BatchNorm gamma/beta and biases);
  * freezable: while the optimizer's `frozen` flag is set, these parameters get no update at all
    (no gradient step, no weight decay, moments and step counts unchanged), bit for bit. The flag is a
    Parameter read by the compiled graph, so switching it never recompiles (see engine/freeze).
Parameters left out by the `trainable` filter are not optimized at all (no gradient is computed).

Why not MindSpore's own: nn.AdamWeightDecay has no bias correction (BERT's variant, not AdamW) and is
deprecated; mindspore.experimental.optim.AdamW follows PyTorch but takes its rate from its own
scheduler classes; none of them can hold parameters still on a runtime switch. Per-parameter step
counts (`steps.*`) give Adam's bias correction its true value for parameters that start training later.

Update rules, for gradient g (divided by loss_scale), rate lr, weight decay wd, parameter p:
  sgd:   g += wd p; v = momentum v + g; p -= lr (g + momentum v if nesterov else v)
  adam:  g += wd p; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; t += 1;
         p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
  adamw: as adam without wd in g, and p *= 1 - lr wd before the step (decoupled weight decay).
"""
import mindspore as ms
import numpy as np
from mindspore import nn, ops
from mindspore.common.parameter import Parameter, ParameterTuple

OPTIMIZER_KEYS = {
    'adam': {'weight_decay', 'betas', 'eps', 'no_decay_norm_bias'},
    'adamw': {'weight_decay', 'betas', 'eps', 'no_decay_norm_bias'},
    'sgd': {'weight_decay', 'momentum', 'nesterov', 'no_decay_norm_bias'},
}
DEFAULTS = dict(weight_decay=0.0, betas=(0.9, 0.999), eps=1e-8, momentum=0.0, nesterov=False,
                no_decay_norm_bias=False)

_sgd_update = ops.MultitypeFuncGraph('recipe_sgd_update')
_adam_update = ops.MultitypeFuncGraph('recipe_adam_update')


def _keep_if_frozen(freezable, active, new, old):
    return ops.select(ops.broadcast_to(active, new.shape), new, old) if freezable else new


@_sgd_update.register('Tensor', 'Tensor', 'Number', 'Number', 'Bool', 'Tensor', 'Tensor', 'Tensor', 'Number',
                      'Bool')
def _sgd(lr, active, loss_scale, momentum, nesterov, param, velocity, grad, weight_decay, freezable):
    """One SGD step of one parameter (PyTorch's rule: coupled weight decay, no dampening)."""
    g = grad / loss_scale + weight_decay * param if weight_decay > 0 else grad / loss_scale
    if momentum > 0:
        v = momentum * velocity + g
        step = g + momentum * v if nesterov else v
        ops.assign(velocity, _keep_if_frozen(freezable, active, v, velocity))
    else:
        step = g
    ops.assign(param, _keep_if_frozen(freezable, active, param - lr * step, param))
    return True


@_adam_update.register('Tensor', 'Tensor', 'Number', 'Number', 'Number', 'Number', 'Bool', 'Tensor', 'Tensor',
                       'Tensor', 'Tensor', 'Tensor', 'Number', 'Bool')
def _adam(lr, active, loss_scale, beta1, beta2, eps, decoupled, param, m, v, steps, grad, weight_decay, freezable):
    """One Adam (decoupled: AdamW) step of one parameter, with its own step count for the bias correction."""
    g = grad / loss_scale
    if weight_decay > 0 and not decoupled:
        g = g + weight_decay * param
    new_m = beta1 * m + (1 - beta1) * g
    new_v = beta2 * v + (1 - beta2) * g * g
    t = steps + 1
    correction1 = 1 - ops.pow(beta1, t)
    correction2 = 1 - ops.pow(beta2, t)
    base = param * (1 - lr * weight_decay) if weight_decay > 0 and decoupled else param
    new_p = base - (lr / correction1) * new_m / (ops.sqrt(new_v / correction2) + eps)
    ops.assign(m, _keep_if_frozen(freezable, active, new_m, m))
    ops.assign(v, _keep_if_frozen(freezable, active, new_v, v))
    ops.assign(steps, _keep_if_frozen(freezable, active, t, steps))
    ops.assign(param, _keep_if_frozen(freezable, active, new_p, param))
    return True


def _is_norm_or_bias(param):
    leaf = param.name.rsplit('.', 1)[-1]
    return leaf in ('gamma', 'beta', 'bias') or param.ndim <= 1


class RecipeOptimizer(nn.Optimizer):
    """Adam / AdamW / SGD with per-parameter weight decay and a runtime freeze switch (module docstring).

    learning_rate: a float or a per-step float32 array (step i uses entry i). decay: one bool per
    parameter (weight decay applies); freezable: one bool per parameter (held still while frozen).
    State parameters: moment1.* (SGD: the velocity), moment2.* and steps.* (Adam/AdamW), global_step.
    """

    def __init__(self, params, learning_rate, kind='adam', weight_decay=0.0, betas=(0.9, 0.999), eps=1e-8,
                 momentum=0.0, nesterov=False, decay=None, freezable=None, loss_scale=1.0):
        super().__init__(learning_rate, params, 0.0)
        if kind not in OPTIMIZER_KEYS:
            raise ValueError(f"unknown optimizer {kind!r}: use one of {sorted(OPTIMIZER_KEYS)}")
        if weight_decay < 0 or momentum < 0 or eps <= 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError("weight_decay and momentum must be >= 0, eps > 0 and betas in [0, 1)")
        if nesterov and momentum <= 0:
            raise ValueError("nesterov needs a momentum above 0")
        n = len(self._parameters)
        decay = [True] * n if decay is None else [bool(d) for d in decay]
        freezable = [False] * n if freezable is None else [bool(f) for f in freezable]
        if len(decay) != n or len(freezable) != n:
            raise ValueError(f"decay and freezable need one entry per parameter ({n})")
        self.kind = kind
        self.decay_values = tuple(float(weight_decay) if d else 0.0 for d in decay)
        self.freezable = tuple(freezable)
        self.loss_scale_value = float(loss_scale)
        self.beta1, self.beta2, self.eps_value = float(betas[0]), float(betas[1]), float(eps)
        self.momentum_value, self.nesterov = float(momentum), bool(nesterov)
        self.frozen = Parameter(ms.Tensor(np.float32(0.0)), name='frozen', requires_grad=False)
        self.moment1 = self._parameters.clone(prefix='moment1', init='zeros')
        if kind != 'sgd':
            self.moment2 = self._parameters.clone(prefix='moment2', init='zeros')
            self.steps = ParameterTuple([Parameter(ms.Tensor(np.float32(0.0)), name=f'steps.{p.name}',
                                                   requires_grad=False) for p in self._parameters])

    def set_frozen(self, frozen):
        """Hold the freezable parameters still (True) or train them (False); no recompilation."""
        self.frozen.set_data(ms.Tensor(np.float32(1.0 if frozen else 0.0)))

    def construct(self, gradients):
        lr = self.get_lr()
        self.assignadd(self.global_step, self.global_step_increase_tensor)
        active = self.frozen < 0.5
        if self.kind == 'sgd':
            return self.hyper_map(ops.partial(_sgd_update, lr, active, self.loss_scale_value, self.momentum_value,
                                              self.nesterov),
                                  self._parameters, self.moment1, gradients, self.decay_values, self.freezable)
        return self.hyper_map(ops.partial(_adam_update, lr, active, self.loss_scale_value, self.beta1, self.beta2,
                                          self.eps_value, self.kind == 'adamw'),
                              self._parameters, self.moment1, self.moment2, self.steps, gradients,
                              self.decay_values, self.freezable)


def build_optimizer(config, params, learning_rate, trainable=None, freezable=None, loss_scale=1.0):
    """A RecipeOptimizer from a config dict such as {'type': 'adamw', 'weight_decay': 0.01}.

    config keys: type (adam | adamw | sgd; default adam), weight_decay (0), betas ([0.9, 0.999]),
    eps (1e-8), momentum (sgd; 0), nesterov (sgd; false), no_decay_norm_bias (false: weight decay on
    every parameter, as PyTorch and mmpose by default). params: a network (its trainable parameters)
    or a list of Parameters. trainable(param) -> bool leaves parameters out entirely; freezable(param)
    -> bool marks the ones `set_frozen(True)` holds still. learning_rate: a float or per-step array.
    Unknown types and keys are refused, naming them.
    """
    config = dict(config or {})
    kind = str(config.pop('type', 'adam')).lower()
    if kind not in OPTIMIZER_KEYS:
        raise ValueError(f"unknown optimizer type {kind!r}: use one of {sorted(OPTIMIZER_KEYS)}")
    unknown = sorted(set(config) - OPTIMIZER_KEYS[kind])
    if unknown:
        raise ValueError(f"unknown key(s) for the {kind} optimizer: {', '.join(unknown)} "
                         f"(allowed: {', '.join(sorted(OPTIMIZER_KEYS[kind]))})")
    settings = dict(DEFAULTS, **config)
    if isinstance(params, nn.Cell):
        params = params.trainable_params()
    params = [p for p in params if trainable is None or trainable(p)]
    if not params:
        raise ValueError("no parameter to optimize (the trainable filter left none)")
    decay = [not (settings['no_decay_norm_bias'] and _is_norm_or_bias(p)) for p in params]
    if isinstance(learning_rate, np.ndarray):
        learning_rate = ms.Tensor(learning_rate.astype(np.float32))
    return RecipeOptimizer(params, learning_rate, kind, weight_decay=float(settings['weight_decay']),
                           betas=tuple(settings['betas']), eps=float(settings['eps']),
                           momentum=float(settings['momentum']), nesterov=bool(settings['nesterov']),
                           decay=decay, freezable=[bool(freezable and freezable(p)) for p in params],
                           loss_scale=loss_scale)
