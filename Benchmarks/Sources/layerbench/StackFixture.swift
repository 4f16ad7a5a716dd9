import Glibc

/// One layer stack mounted with each engine on demand, at `work/mnt/<stack>-<engine>`, plus the
/// list of its entries (taken once, from the first mount) that the in-process workloads use.
class StackFixture {
    let stack: LayerStackSpec
    let work: String
    let layermount: String
    private var mounts: [Engine: MountedStack] = [:]
    private var mountErrors: [Engine: String] = [:]
    private var cachedIndex: StackIndex?

    init(stack: LayerStackSpec, work: String, layermount: String) {
        self.stack = stack
        self.work = work
        self.layermount = layermount
    }

    /// The stack mounted with `engine` (mounted on first use).
    ///
    /// - Throws: ``CommandError`` when mounting fails (remembered: later calls fail the same way).
    func mounted(_ engine: Engine) throws -> MountedStack {
        if let mount = mounts[engine] { return mount }
        if let error = mountErrors[engine] { throw CommandError(description: error) }
        do {
            let mount = try MountedStack(
                engine: engine, stack: stack, mountPoint: "\(work)/mnt/\(stack.name)-\(engine.rawValue)",
                binary: layermount)
            mounts[engine] = mount
            return mount
        } catch {
            mountErrors[engine] = "\(error)"
            throw error
        }
    }

    /// The entries of the merged tree, listed through the kernel mount if there is one, else
    /// through `mount`.
    func index(via mount: MountedStack) throws -> StackIndex {
        if let cachedIndex { return cachedIndex }
        let source = (try? mounted(.kernel)) ?? mount
        let index = try StackIndex(listing: source)
        cachedIndex = index
        return index
    }

    /// Unmounts every engine's mount.
    func unmountAll() {
        for mount in mounts.values { mount.unmount() }
        mounts.removeAll()
    }
}

/// The entries of a merged tree: every path (for stat) and the regular files with their sizes
/// (for reads), relative to the mount point.
struct StackIndex {
    /// Every entry below the root.
    var paths: [String] = []
    /// Regular files that are not empty, with their sizes.
    var files: [(path: String, size: Int)] = []

    /// Lists `mount` with `find . -mindepth 1 -printf '%y %s %P\0'`.
    init(listing mount: MountedStack) throws {
        let result = try Subprocess.run(
            ["find", ".", "-mindepth", "1", "-printf", "%y %s %P\\0"], directory: mount.mountPoint,
            keepOutput: 1 << 30)
        for record in result.output.split(separator: 0) {
            let parts = record.split(separator: UInt8(ascii: " "), maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3 else { continue }
            let path = String(decoding: parts[2], as: UTF8.self)
            paths.append(path)
            if parts[0].first == UInt8(ascii: "f"), let size = Int(String(decoding: parts[1], as: UTF8.self)),
                size > 0
            {
                files.append((path, size))
            }
        }
        guard !paths.isEmpty else { throw CommandError(description: "\(mount.mountPoint) lists no entries") }
    }
}

/// A small deterministic generator (SplitMix64), so every engine gets the same random sequence.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
