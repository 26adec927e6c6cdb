"""The cluster: the peer link between the nodes of a cluster (:mod:`.peerlink`, SSH with
the cluster key), the base of failover strategies over it (:mod:`.strategy`) and settings
replication from the main (:mod:`.replication`).

Plugins reach the strategy base as :class:`tieline.PeerLinkStrategy`.
"""
