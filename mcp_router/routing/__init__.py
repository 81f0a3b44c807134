"""Routing nodes: ChatProviders that wrap adapters and each other into a route's target tree."""

from mcp_router.routing.balance import Balanced
from mcp_router.routing.deadline import plan_hop
from mcp_router.routing.decisions import ends_route, tries_allowed
from mcp_router.routing.fallback import Fallback, try_in_order
from mcp_router.routing.node import Node, label_of, record_skipped
from mcp_router.routing.retry import Retrying
from mcp_router.routing.target import Target

__all__ = [
    "Balanced",
    "Fallback",
    "Node",
    "Retrying",
    "Target",
    "ends_route",
    "label_of",
    "plan_hop",
    "record_skipped",
    "try_in_order",
    "tries_allowed",
]
