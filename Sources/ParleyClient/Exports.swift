// A UI imports ParleyClient alone: the protocol's values come with it, and of the store and the buckets only the
// records and settings the node's API hands out. The store itself is reached only through `Node`.
@_exported import ParleyCore

@_exported import struct ParleyBucket.ArchiveWriteReport
@_exported import struct ParleyBucket.BucketError
@_exported import protocol ParleyBucket.BucketRequestObserver
@_exported import struct ParleyBucket.BucketSchedule
@_exported import struct ParleyBucket.BucketSettings
@_exported import struct ParleyBucket.BucketSyncReport
@_exported import enum ParleyBucket.BucketURL
@_exported import struct ParleyBucket.FlushReport
@_exported import struct ParleyBucket.ObservedRequest
@_exported import class ParleyBucket.ObservedStore
@_exported import struct ParleyBucket.S3Store
@_exported import struct ParleyPeer.PeerCounters
@_exported import struct ParleyPeer.PeerSettings
@_exported import class ParleyStore.BlockStore
@_exported import struct ParleyStore.ReceiptCoverage
@_exported import struct ParleyStore.RejectedEvent
@_exported import struct ParleySync.BlockRef
@_exported import enum ParleySync.BlockTransfer
@_exported import struct ParleySync.JSONLReader
@_exported import struct ParleySync.OutboxStatus
@_exported import struct ParleySync.ReceivedObject
