"""`engine-hub demo`: a hub plus simulated engines that use the real client library."""
