"""Dreamer: the baseline actor-critic in imagination, blind to cost.

Every safe agent is compared against this one. Each update:

1. Imagine `horizon` steps under the actor from every posterior state of the batch.
2. Compute lambda-returns of the predicted rewards, bootstrapped by the target critic.
3. Actor loss: minus the discounted, scale-normalised returns (gradients flow back through the
   world model's dynamics into the actions), minus an entropy bonus.
4. Step the actor.
5. Regress the reward critic and the cost critic on their lambda-returns. The cost critic is not
   used here; it is trained so the cost the agent would incur can be watched and compared.
"""

from __future__ import annotations

from torch import Tensor

from workbench.agents.base import Agent, Update
from workbench.world_model import Latent


class Dreamer(Agent):
    def update(self, posterior: Latent, batch: dict[str, Tensor]) -> Update:
        imagination = self.imagine(posterior)  # 1
        reward_return = self.returns(imagination, imagination.reward, self.critic)  # 2
        cost_return = self.returns(imagination, imagination.cost, self.cost_critic)
        weights = self.discount_weights(imagination)
        objective = self.normalised(reward_return) + self.config.agent.entropy * self.entropy(
            imagination
        )
        actor_loss = -(weights * objective).mean()  # 3
        grad_norm = self.step_actor(actor_loss)  # 4
        metrics = self.train_critics(imagination, reward_return, cost_return)  # 5
        metrics.update(self.summary(imagination, reward_return, cost_return))
        metrics.update({"agent/actor_loss": actor_loss.item(), "agent/actor_grad_norm": grad_norm})
        return Update(metrics, imagination)
