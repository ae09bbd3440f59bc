// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title FederatedLedger
/// @notice The consortium's ledger of a federated training run: who is a member, which update each
/// institution submitted in which round, which global model k of n institutions authorised, and who
/// retrieved which model and why.
/// @dev Storage holds only what the contract must check (membership, the threshold, the round state,
/// each round's global digest, one-submission-per-round markers, nonces). Everything an auditor needs
/// beyond that is in the events. SM9 signatures are carried, not verified: the EVM has no SM9 pairing,
/// so the contract enforces k-of-n with EIP-712 approvals checked by ecrecover, and SM9 is checked
/// off-chain by the nodes, the aggregator and the audit API.
contract FederatedLedger {
    // ------------------------------------------------------------------ constants

    /// @notice Width rates are parts per million of the full model width.
    uint32 public constant FULL_WIDTH_PPM = 1_000_000;
    uint256 public constant MAX_CID_LENGTH = 128;
    uint256 public constant MAX_SM9_SIGNATURE_LENGTH = 512;
    uint256 public constant MAX_TEXT_LENGTH = 256;

    uint8 public constant ACTION_ADD_INSTITUTION = 0;
    uint8 public constant ACTION_REMOVE_INSTITUTION = 1;
    uint8 public constant ACTION_SET_THRESHOLD = 2;
    uint8 public constant ACTION_SET_AGGREGATOR = 3;
    // Privacy budget (not public: every extra selector reshapes the dispatcher and the gas of hot calls).
    // Recorded in MembershipChangeApproved for a budget change (signed as its own struct below).
    uint8 private constant ACTION_SET_PRIVACY_BUDGET = 4;
    /// @dev delta is in 10^-12 and must stay below 1; epsilon is in millionths.
    uint64 private constant DELTA_UNIT = 1_000_000_000_000;

    bytes32 public constant GLOBAL_MODEL_TYPEHASH = keccak256(
        "GlobalModel(uint64 round,string cid,bytes32 digest,bytes32 updatesRoot,string manifestCid,bytes32 manifestDigest,"
        "uint32 entryCount,bytes sm9Signature,uint64 nonce)"
    );
    bytes32 public constant MEMBERSHIP_CHANGE_TYPEHASH = keccak256(
        "MembershipChange(uint8 action,address account,string sm9Id,uint32 threshold,uint64 nonce)"
    );
    bytes32 private constant PRIVACY_BUDGET_TYPEHASH =
        keccak256("PrivacyBudgetChange(uint64 epsilonMicro,uint64 deltaPico,uint64 nonce)");
    bytes32 private constant DOMAIN_TYPEHASH = keccak256(
        "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
    );
    bytes32 private constant NAME_HASH = keccak256("FederatedLedger");
    bytes32 private constant VERSION_HASH = keccak256("1");
    /// @dev secp256k1n / 2: signatures with a larger s are the malleable twin and are refused.
    uint256 private constant HALF_CURVE_ORDER = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    // ------------------------------------------------------------------ storage

    /// @dev One slot per institution, read (and for submissions written) on every hot path.
    struct Member {
        bool active;
        bool registered;
        /// Lowest round this institution may still submit to: last submitted round + 1.
        uint64 nextRound;
    }

    // Hot round state, packed into one slot (read by submitUpdate and postGlobalModel).
    uint64 private _round;
    uint32 private _updateCount;
    bool private _roundOpen;
    bool private _started;
    uint32 private _threshold;
    uint32 private _activeCount;
    uint64 private _postNonce;
    // Governance state.
    address private _aggregator;
    uint64 private _membershipNonce;
    // The consortium's (epsilon, delta) differential-privacy budget; (0, 0): none, the rounds carry no DP.
    // Its own slot, touched only by the budget's setter and view, so no hot path pays for it.
    uint64 private _epsilonMicro;
    uint64 private _deltaPico;

    mapping(address account => Member) private _members;
    mapping(address account => string) private _sm9Ids;
    mapping(bytes32 sm9IdHash => address) private _sm9IdOwner;
    address[] private _registered;
    mapping(uint64 round => bytes32) private _globalDigest;

    uint256 private immutable _cachedChainId;
    bytes32 private immutable _cachedDomainSeparator;

    // ------------------------------------------------------------------ events

    event InstitutionAdded(address indexed institution, string sm9Id);
    event InstitutionRemoved(address indexed institution);
    event ThresholdChanged(uint32 previous, uint32 current);
    event AggregatorChanged(address indexed previous, address indexed current);
    /// @notice The privacy budget (epsilon in millionths, delta in 10^-12) is now (epsilonMicro, deltaPico).
    event PrivacyBudgetChanged(uint64 epsilonMicro, uint64 deltaPico);
    /// @notice A membership change passed with these distinct approvers, signing this EIP-712 struct hash.
    event MembershipChangeApproved(
        uint64 indexed nonce, uint8 indexed action, bytes32 structHash, address[] approvers
    );
    event RoundOpened(uint64 indexed round, string baseCid, bytes32 baseDigest, address indexed aggregator);
    event UpdateSubmitted(
        uint64 indexed round,
        address indexed institution,
        string cid,
        bytes32 digest,
        bytes32 mappingDigest,
        uint64 numSamples,
        uint32 widthRate,
        bytes sm9Signature
    );
    /// @notice Round `round`'s record was posted: `model` is the whole record (global model, updates
    /// root, round manifest CID and digest, entry count), as the approvers signed it.
    event GlobalModelPosted(
        uint64 indexed round,
        GlobalModel model,
        bytes sm9ThresholdSignature,
        uint32 updateCount,
        uint64 nonce,
        address[] approvers
    );
    event AccessRecorded(address indexed accessor, bytes32 indexed cidHash, string cid, string purpose);

    // ------------------------------------------------------------------ errors

    error NotAggregator(address caller);
    error NotActiveInstitution(address account);
    error NotMember(address caller);
    error ZeroAddress();
    error AlreadyActive(address account);
    error Sm9IdTaken(string sm9Id, address owner);
    error InvalidSm9Id(uint256 length);
    error InvalidThreshold(uint32 threshold, uint32 activeInstitutions);
    error InvalidPrivacyBudget(uint64 epsilonMicro, uint64 deltaPico);
    error InstitutionListMismatch(uint256 accounts, uint256 sm9Ids);
    error UnexpectedRound(uint64 given, uint64 expected);
    error RoundStillOpen(uint64 round);
    error RoundNotOpen(uint64 round);
    error BaseModelMismatch(uint64 round, bytes32 expected, bytes32 given);
    error AlreadySubmitted(uint64 round, address institution);
    error InvalidCid(uint256 length);
    error ZeroDigest();
    error InvalidWidthRate(uint32 widthRate);
    error ZeroSamples();
    error InvalidSm9Signature(uint256 length);
    error InvalidPurpose(uint256 length);
    error InvalidApprovalSignature(uint256 index);
    error ApproverNotActive(uint256 index, address signer);
    error NotEnoughApprovals(uint256 distinct, uint256 required);
    error EntryCountMismatch(uint32 given, uint32 submitted);

    // ------------------------------------------------------------------ construction

    /// @param initialAggregator the account allowed to open rounds and post global models
    /// @param founders the founding institutions' addresses
    /// @param founderSm9Ids their SM9 identities (same order)
    /// @param initialThreshold k: approvals needed for global models and membership changes
    /// @param epsilonMicro the privacy budget's epsilon in millionths (0 with deltaPico 0: no DP budget)
    /// @param deltaPico the privacy budget's delta in 10^-12
    constructor(
        address initialAggregator,
        address[] memory founders,
        string[] memory founderSm9Ids,
        uint32 initialThreshold,
        uint64 epsilonMicro,
        uint64 deltaPico
    ) {
        if (founders.length != founderSm9Ids.length) {
            revert InstitutionListMismatch(founders.length, founderSm9Ids.length);
        }
        _setAggregator(initialAggregator);
        for (uint256 i = 0; i < founders.length; ++i) {
            _addInstitution(founders[i], founderSm9Ids[i]);
        }
        _setThreshold(initialThreshold);
        _setPrivacyBudget(epsilonMicro, deltaPico);
        _cachedChainId = block.chainid;
        _cachedDomainSeparator = _buildDomainSeparator();
    }

    // ------------------------------------------------------------------ rounds

    /// @notice Opens `round`, starting from the model (`baseCid`, `baseDigest`). Round 0 starts from
    /// the seeded initial model; round r > 0 must start from round r-1's posted global model.
    function openRound(uint64 round, string calldata baseCid, bytes32 baseDigest) external {
        _onlyAggregator();
        _checkCid(baseCid);
        if (baseDigest == bytes32(0)) revert ZeroDigest();
        uint64 expected = 0;
        if (_started) {
            if (_roundOpen) revert RoundStillOpen(_round);
            expected = _round + 1;
        }
        if (round != expected) revert UnexpectedRound(round, expected);
        if (round > 0) {
            bytes32 previous = _globalDigest[round - 1];
            if (previous != baseDigest) revert BaseModelMismatch(round, previous, baseDigest);
        }
        _round = round;
        _roundOpen = true;
        _started = true;
        _updateCount = 0;
        emit RoundOpened(round, baseCid, baseDigest, msg.sender);
    }

    /// @notice Records an institution's update for the open round. At most one submission per
    /// institution per round: a second one reverts with AlreadySubmitted (an update, once on the
    /// ledger, is never replaced; a faulty one is left out by the aggregator and the approvers).
    /// @param widthRate the sub-model width in parts per million (1_000_000 = full width)
    /// @param mappingDigest SM3 digest of the sub-model's index map into the global model
    function submitUpdate(
        uint64 round,
        string calldata cid,
        bytes32 digest,
        bytes32 mappingDigest,
        uint64 numSamples,
        uint32 widthRate,
        bytes calldata sm9Signature
    ) external {
        Member storage member = _members[msg.sender];
        if (!member.active) revert NotActiveInstitution(msg.sender);
        if (!_roundOpen || round != _round) revert RoundNotOpen(round);
        if (round < member.nextRound) revert AlreadySubmitted(round, msg.sender);
        _checkCid(cid);
        if (digest == bytes32(0) || mappingDigest == bytes32(0)) revert ZeroDigest();
        if (numSamples == 0) revert ZeroSamples();
        if (widthRate == 0 || widthRate > FULL_WIDTH_PPM) revert InvalidWidthRate(widthRate);
        _checkSm9Signature(sm9Signature);
        member.nextRound = round + 1;
        unchecked {
            _updateCount += 1; // at most one per institution, so it cannot overflow
        }
        emit UpdateSubmitted(round, msg.sender, cid, digest, mappingDigest, numSamples, widthRate, sm9Signature);
    }

    /// @notice The round record a post carries: the global model, the Merkle root of the included
    /// entries, the round manifest (every entry included or left out with its reason) and how many
    /// entries the manifest accounts for.
    struct GlobalModel {
        uint64 round;
        string cid;
        bytes32 digest;
        bytes32 updatesRoot;
        string manifestCid;
        bytes32 manifestDigest;
        uint32 entryCount;
    }

    /// @notice Posts round `model.round`'s global model and closes the round. `approvals` are 65-byte
    /// EIP-712 signatures over GlobalModel(round, cid, digest, updatesRoot, manifestCid, manifestDigest,
    /// entryCount, sm9Signature, nonce) by at least k distinct active institutions; an approver listed
    /// twice is counted once. `entryCount` must equal the round's submissions so far: a submission
    /// that lands after the manifest was built makes the post revert (EntryCountMismatch), and the
    /// aggregator redoes the manifest, so every entry is always accounted for.
    /// @dev The record is one calldata struct: nine flat parameters do not fit the EVM stack.
    function postGlobalModel(
        GlobalModel calldata model,
        bytes calldata sm9ThresholdSignature,
        bytes[] calldata approvals
    ) external {
        _onlyAggregator();
        uint64 round = model.round;
        if (!_roundOpen || round != _round) revert RoundNotOpen(round);
        _checkCid(model.cid);
        _checkCid(model.manifestCid);
        if (model.digest == bytes32(0) || model.manifestDigest == bytes32(0)) revert ZeroDigest();
        if (model.entryCount != _updateCount) revert EntryCountMismatch(model.entryCount, _updateCount);
        _checkSm9Signature(sm9ThresholdSignature);
        uint64 nonce = _postNonce;
        address[] memory approvers =
            _checkApprovals(_typedDataDigest(_globalModelStructHash(model, sm9ThresholdSignature, nonce)), approvals);
        _globalDigest[round] = model.digest;
        _roundOpen = false;
        _postNonce = nonce + 1;
        emit GlobalModelPosted(round, model, sm9ThresholdSignature, model.entryCount, nonce, approvers);
    }

    // ------------------------------------------------------------------ access log

    /// @notice Logs that the caller (an active institution or the aggregator) retrieved `cid`, and why.
    function recordAccess(string calldata cid, string calldata purpose) external {
        if (!_members[msg.sender].active && msg.sender != _aggregator) revert NotMember(msg.sender);
        _checkCid(cid);
        if (bytes(purpose).length == 0 || bytes(purpose).length > MAX_TEXT_LENGTH) {
            revert InvalidPurpose(bytes(purpose).length);
        }
        emit AccessRecorded(msg.sender, keccak256(bytes(cid)), cid, purpose);
    }

    // ------------------------------------------------------------------ membership (k of n)

    /// @notice Adds (or re-activates) an institution; `newThreshold` is k after the change.
    function addInstitution(
        address account,
        string calldata sm9Id,
        uint32 newThreshold,
        bytes[] calldata approvals
    ) external {
        _approveMembershipChange(ACTION_ADD_INSTITUTION, account, sm9Id, newThreshold, approvals);
        _addInstitution(account, sm9Id);
        _setThreshold(newThreshold);
    }

    /// @notice Deactivates an institution; `newThreshold` is k after the change.
    function removeInstitution(address account, uint32 newThreshold, bytes[] calldata approvals) external {
        _approveMembershipChange(ACTION_REMOVE_INSTITUTION, account, "", newThreshold, approvals);
        Member storage member = _members[account];
        if (!member.active) revert NotActiveInstitution(account);
        member.active = false;
        _activeCount -= 1;
        emit InstitutionRemoved(account);
        _setThreshold(newThreshold);
    }

    /// @notice Changes k.
    function setThreshold(uint32 newThreshold, bytes[] calldata approvals) external {
        _approveMembershipChange(ACTION_SET_THRESHOLD, address(0), "", newThreshold, approvals);
        _setThreshold(newThreshold);
    }

    /// @notice Hands the aggregator role to `account` (the signed threshold is the current k).
    function setAggregator(address account, bytes[] calldata approvals) external {
        _approveMembershipChange(ACTION_SET_AGGREGATOR, account, "", _threshold, approvals);
        _setAggregator(account);
    }

    /// @notice Sets the consortium's differential-privacy budget; k approvals of
    /// PrivacyBudgetChange(epsilonMicro, deltaPico, nonce) at the membership nonce.
    function setPrivacyBudget(uint64 epsilonMicro, uint64 deltaPico, bytes[] calldata approvals) external {
        uint64 nonce = _membershipNonce;
        bytes32 structHash = keccak256(abi.encode(PRIVACY_BUDGET_TYPEHASH, epsilonMicro, deltaPico, nonce));
        address[] memory approvers = _checkApprovals(_typedDataDigest(structHash), approvals);
        _membershipNonce = nonce + 1;
        emit MembershipChangeApproved(nonce, ACTION_SET_PRIVACY_BUDGET, structHash, approvers);
        _setPrivacyBudget(epsilonMicro, deltaPico);
    }

    // ------------------------------------------------------------------ views

    /// @notice The consortium's privacy budget: epsilon in millionths, delta in 10^-12; (0, 0) when none.
    function privacyBudget() external view returns (uint64 epsilonMicro, uint64 deltaPico) {
        return (_epsilonMicro, _deltaPico);
    }

    function aggregator() external view returns (address) {
        return _aggregator;
    }

    function threshold() external view returns (uint32) {
        return _threshold;
    }

    function activeInstitutionCount() external view returns (uint32) {
        return _activeCount;
    }

    /// @notice The nonces the next GlobalModel and MembershipChange approvals must sign.
    function nonces() external view returns (uint64 globalModelNonce, uint64 membershipNonce) {
        return (_postNonce, _membershipNonce);
    }

    /// @notice started: a round was ever opened; round: the latest opened round; open: it awaits its
    /// global model; updateCount: submissions to it so far.
    function roundState() external view returns (bool started, uint64 round, bool open, uint32 updateCount) {
        return (_started, _round, _roundOpen, _updateCount);
    }

    /// @notice The SM3 digest of round `round`'s posted global model (zero when not posted).
    function globalDigest(uint64 round) external view returns (bytes32) {
        return _globalDigest[round];
    }

    /// @notice An institution's record. nextRound is the lowest round it may still submit to.
    function institution(address account)
        external
        view
        returns (bool active, bool registered, uint64 nextRound, string memory sm9Id)
    {
        Member memory member = _members[account];
        return (member.active, member.registered, member.nextRound, _sm9Ids[account]);
    }

    /// @notice Every address ever registered (active or not), in registration order.
    function institutions()
        external
        view
        returns (address[] memory accounts, string[] memory sm9Ids, bool[] memory active)
    {
        uint256 n = _registered.length;
        accounts = _registered;
        sm9Ids = new string[](n);
        active = new bool[](n);
        for (uint256 i = 0; i < n; ++i) {
            sm9Ids[i] = _sm9Ids[accounts[i]];
            active[i] = _members[accounts[i]].active;
        }
    }

    /// @notice The address an SM9 identity is bound to (zero if none).
    function sm9IdOwner(string calldata sm9Id) external view returns (address) {
        return _sm9IdOwner[keccak256(bytes(sm9Id))];
    }

    function domainSeparator() public view returns (bytes32) {
        return block.chainid == _cachedChainId ? _cachedDomainSeparator : _buildDomainSeparator();
    }

    /// @notice EIP-5267: the EIP-712 domain, so wallets and clients need not hard-code it.
    function eip712Domain()
        external
        view
        returns (
            bytes1 fields,
            string memory name,
            string memory version,
            uint256 chainId,
            address verifyingContract,
            bytes32 salt,
            uint256[] memory extensions
        )
    {
        return (hex"0f", "FederatedLedger", "1", block.chainid, address(this), bytes32(0), new uint256[](0));
    }

    /// @notice The EIP-712 digest an approver signs for this global model at the current nonce.
    function globalModelApprovalDigest(GlobalModel calldata model, bytes calldata sm9ThresholdSignature)
        external
        view
        returns (bytes32)
    {
        return _typedDataDigest(_globalModelStructHash(model, sm9ThresholdSignature, _postNonce));
    }

    /// @notice The EIP-712 digest an approver signs for this membership change at the current nonce.
    function membershipChangeApprovalDigest(
        uint8 action,
        address account,
        string calldata sm9Id,
        uint32 newThreshold
    ) external view returns (bytes32) {
        return _typedDataDigest(_membershipStructHash(action, account, sm9Id, newThreshold, _membershipNonce));
    }

    // ------------------------------------------------------------------ internals

    function _onlyAggregator() private view {
        if (msg.sender != _aggregator) revert NotAggregator(msg.sender);
    }

    function _checkCid(string calldata cid) private pure {
        uint256 length = bytes(cid).length;
        if (length == 0 || length > MAX_CID_LENGTH) revert InvalidCid(length);
    }

    function _checkSm9Signature(bytes calldata signature) private pure {
        if (signature.length == 0 || signature.length > MAX_SM9_SIGNATURE_LENGTH) {
            revert InvalidSm9Signature(signature.length);
        }
    }

    function _addInstitution(address account, string memory sm9Id) private {
        if (account == address(0)) revert ZeroAddress();
        uint256 idLength = bytes(sm9Id).length;
        if (idLength == 0 || idLength > MAX_TEXT_LENGTH) revert InvalidSm9Id(idLength);
        Member storage member = _members[account];
        if (member.active) revert AlreadyActive(account);
        // An SM9 identity, once bound to an address, is never bound to another one: past
        // signatures under it must keep naming the same institution.
        bytes32 idHash = keccak256(bytes(sm9Id));
        address owner = _sm9IdOwner[idHash];
        if (owner != address(0) && owner != account) revert Sm9IdTaken(sm9Id, owner);
        _sm9IdOwner[idHash] = account;
        _sm9Ids[account] = sm9Id;
        if (!member.registered) {
            member.registered = true;
            _registered.push(account);
        }
        member.active = true;
        _activeCount += 1;
        emit InstitutionAdded(account, sm9Id);
    }

    function _setThreshold(uint32 newThreshold) private {
        if (newThreshold == 0 || newThreshold > _activeCount) revert InvalidThreshold(newThreshold, _activeCount);
        uint32 previous = _threshold;
        if (previous != newThreshold) {
            _threshold = newThreshold;
            emit ThresholdChanged(previous, newThreshold);
        }
    }

    /// @dev Both zero (no budget), or epsilon > 0 with 0 < delta < 1.
    function _setPrivacyBudget(uint64 epsilonMicro, uint64 deltaPico) private {
        bool none = epsilonMicro == 0 && deltaPico == 0;
        if (!none && (epsilonMicro == 0 || deltaPico == 0 || deltaPico >= DELTA_UNIT)) {
            revert InvalidPrivacyBudget(epsilonMicro, deltaPico);
        }
        _epsilonMicro = epsilonMicro;
        _deltaPico = deltaPico;
        emit PrivacyBudgetChanged(epsilonMicro, deltaPico);
    }

    function _setAggregator(address account) private {
        if (account == address(0)) revert ZeroAddress();
        emit AggregatorChanged(_aggregator, account);
        _aggregator = account;
    }

    function _globalModelStructHash(GlobalModel calldata model, bytes calldata sm9Signature, uint64 nonce)
        private
        pure
        returns (bytes32)
    {
        return keccak256(
            abi.encode(
                GLOBAL_MODEL_TYPEHASH,
                model.round,
                keccak256(bytes(model.cid)),
                model.digest,
                model.updatesRoot,
                keccak256(bytes(model.manifestCid)),
                model.manifestDigest,
                model.entryCount,
                keccak256(sm9Signature),
                nonce
            )
        );
    }

    function _membershipStructHash(
        uint8 action,
        address account,
        string memory sm9Id,
        uint32 newThreshold,
        uint64 nonce
    ) private pure returns (bytes32) {
        return keccak256(
            abi.encode(MEMBERSHIP_CHANGE_TYPEHASH, action, account, keccak256(bytes(sm9Id)), newThreshold, nonce)
        );
    }

    function _approveMembershipChange(
        uint8 action,
        address account,
        string memory sm9Id,
        uint32 newThreshold,
        bytes[] calldata approvals
    ) private {
        uint64 nonce = _membershipNonce;
        bytes32 structHash = _membershipStructHash(action, account, sm9Id, newThreshold, nonce);
        address[] memory approvers = _checkApprovals(_typedDataDigest(structHash), approvals);
        _membershipNonce = nonce + 1;
        emit MembershipChangeApproved(nonce, action, structHash, approvers);
    }

    /// @dev Returns the distinct approvers; duplicates are counted once, anything not an active
    /// institution's valid signature reverts (so a caller learns which approval is bad).
    function _checkApprovals(bytes32 digest, bytes[] calldata approvals) private view returns (address[] memory) {
        address[] memory approvers = new address[](approvals.length);
        uint256 distinct = 0;
        for (uint256 i = 0; i < approvals.length; ++i) {
            address signer = _recover(digest, approvals[i], i);
            if (!_members[signer].active) revert ApproverNotActive(i, signer);
            bool seen = false;
            for (uint256 j = 0; j < distinct; ++j) {
                if (approvers[j] == signer) {
                    seen = true;
                    break;
                }
            }
            if (!seen) {
                approvers[distinct] = signer;
                ++distinct;
            }
        }
        if (distinct < _threshold) revert NotEnoughApprovals(distinct, _threshold);
        assembly ("memory-safe") {
            mstore(approvers, distinct) // shrink to the distinct approvers
        }
        return approvers;
    }

    function _recover(bytes32 digest, bytes calldata signature, uint256 index) private pure returns (address) {
        if (signature.length != 65) revert InvalidApprovalSignature(index);
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly ("memory-safe") {
            r := calldataload(signature.offset)
            s := calldataload(add(signature.offset, 32))
            v := byte(0, calldataload(add(signature.offset, 64)))
        }
        if (uint256(s) > HALF_CURVE_ORDER || (v != 27 && v != 28)) revert InvalidApprovalSignature(index);
        address signer = ecrecover(digest, v, r, s);
        if (signer == address(0)) revert InvalidApprovalSignature(index);
        return signer;
    }

    function _typedDataDigest(bytes32 structHash) private view returns (bytes32 digest) {
        bytes32 separator = domainSeparator();
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, hex"1901")
            mstore(add(ptr, 0x02), separator)
            mstore(add(ptr, 0x22), structHash)
            digest := keccak256(ptr, 0x42)
        }
    }

    function _buildDomainSeparator() private view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }
}
