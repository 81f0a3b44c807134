"""In-process PII and secret filtering: detectors, actions, and the per-session filter."""

from mcp_router.pii.actions import Action, Pseudonyms
from mcp_router.pii.detectors import Detector, Finding, PatternDetector, resolve_overlaps
from mcp_router.pii.filter import PiiFilter, PiiSession, combine_summaries
from mcp_router.pii.guard import PiiBlocked, PiiFilterFailed
from mcp_router.pii.policy import BUILTIN_ENTITIES, PiiPolicy
from mcp_router.pii.registry import build_detectors, builtin_detectors, custom_detector, detect
from mcp_router.pii.stream import StreamRestorer

__all__ = [
    "BUILTIN_ENTITIES", "Action", "Detector", "Finding", "PatternDetector", "PiiBlocked",
    "PiiFilter", "PiiFilterFailed", "PiiPolicy", "PiiSession", "Pseudonyms", "StreamRestorer",
    "build_detectors", "builtin_detectors", "combine_summaries", "custom_detector", "detect",
    "resolve_overlaps",
]
