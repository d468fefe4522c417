"""The DEX aggregator: best venue or optimal split for an order, net of gas."""

from dexpilot.routing.router import (
    Candidate,
    NoRouteError,
    NoRouteNetworkError,
    Route,
    RouteLeg,
    Router,
    VenueFailure,
    gas_rate,
)
from dexpilot.routing.split import CpCurve, optimal_split

__all__ = ["Candidate", "CpCurve", "NoRouteError", "NoRouteNetworkError", "Route", "RouteLeg",
           "Router", "VenueFailure", "gas_rate", "optimal_split"]
