"""Customer value: churn risk, expected purchases and lifetime value (BG/NBD and Gamma-Gamma).

:mod:`.params` holds the fitted parameters, :mod:`.fit` fits them with pymc-marketing (in the
leader's sample process), :mod:`.score` scores a customer with them in closed form (docs/value.md).
"""

from streamseg.value.params import ValueParams
from streamseg.value.score import CustomerValue, Rfm, rfm_from_state, score, score_state

__all__ = ["CustomerValue", "Rfm", "ValueParams", "rfm_from_state", "score", "score_state"]
