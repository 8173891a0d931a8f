"""Your own explanation method: a function ``(model, inputs, targets, **args) -> maps``, Quantus'
``explain_func`` convention, named in a job as ``jobs/examples/explain.py:input_x_gradient``.

It gets the model (eval mode, parameter gradients off), a chunk of normalized images [N, 3, H, W]
and their target classes [N] on the model's device, and returns maps [N, H, W] or [N, C, H, W]
(a tensor or a numpy array; with ``arrays: numpy`` in the job it gets numpy arrays, as Quantus
passes them). Keyword arguments come from the method's ``args``.
"""

import torch


def input_x_gradient(model, inputs, targets, scale=1.0):
    x = inputs.clone().requires_grad_(True)
    logits = model(x)
    (gradient,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), x)
    return scale * gradient * inputs
