// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// Hostile ERC20s for the token-safety tests: each misbehaves in one way real scam tokens do.
/// The owner (the deployer) is exempt from every trap, so it can seed a pool normally.
contract HostileToken {
    string public name;
    string public symbol;
    uint8 public constant decimals = 18;
    uint256 public totalSupply;
    address public immutable owner;

    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    constructor(string memory symbol_) {
        name = symbol_;
        symbol = symbol_;
        owner = msg.sender;
    }

    function mint(address to, uint256 amount) external {
        require(msg.sender == owner, "only owner");
        totalSupply += amount;
        balanceOf[to] += amount;
        emit Transfer(address(0), to, amount);
    }

    function approve(address spender, uint256 amount) external returns (bool) {
        allowance[msg.sender][spender] = amount;
        emit Approval(msg.sender, spender, amount);
        return true;
    }

    function transfer(address to, uint256 amount) external virtual returns (bool) {
        _transfer(msg.sender, to, amount);
        return true;
    }

    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        uint256 allowed = allowance[from][msg.sender];
        if (allowed != type(uint256).max) {
            require(allowed >= amount, "allowance");
            allowance[from][msg.sender] = allowed - amount;
        }
        _transfer(from, to, amount);
        return true;
    }

    /// The trap: may revert, and returns the fee taken from ``amount``.
    function _check(address from, address to, uint256 amount) internal view virtual
        returns (uint256 fee)
    {
        from; to; amount;
        return 0;
    }

    function _transfer(address from, address to, uint256 amount) internal {
        require(balanceOf[from] >= amount, "balance");
        uint256 fee = (from == owner || to == owner) ? 0 : _check(from, to, amount);
        balanceOf[from] -= amount;
        balanceOf[to] += amount - fee;
        emit Transfer(from, to, amount - fee);
        if (fee > 0) {
            balanceOf[owner] += fee;
            emit Transfer(from, owner, fee);
        }
    }
}

/// Takes ``feeBps`` of every transfer (buys, sells and plain transfers alike).
contract FeeOnTransferToken is HostileToken {
    uint256 public immutable feeBps;

    constructor(string memory symbol_, uint256 feeBps_) HostileToken(symbol_) {
        feeBps = feeBps_;
    }

    function _check(address, address, uint256 amount) internal view override returns (uint256) {
        return amount * feeBps / 10_000;
    }
}

/// Anyone may buy; only the owner may send tokens into the pool: nobody else can sell.
contract HoneypotToken is HostileToken {
    address public pool;

    constructor(string memory symbol_) HostileToken(symbol_) {}

    function setPool(address pool_) external {
        require(msg.sender == owner, "only owner");
        pool = pool_;
    }

    function _check(address, address to, uint256) internal view override returns (uint256) {
        require(to != pool, "transfer to pool blocked");
        return 0;
    }
}

/// The owner can freeze any account: a frozen account can neither send nor receive.
contract FreezableToken is HostileToken {
    mapping(address => bool) public frozen;

    constructor(string memory symbol_) HostileToken(symbol_) {}

    function freeze(address account) external {
        require(msg.sender == owner, "only owner");
        frozen[account] = true;
    }

    function _check(address from, address to, uint256) internal view override returns (uint256) {
        require(!frozen[from] && !frozen[to], "account frozen");
        return 0;
    }
}

/// The owner can pause every transfer.
contract PausableToken is HostileToken {
    bool public paused;

    constructor(string memory symbol_) HostileToken(symbol_) {}

    function pause() external {
        require(msg.sender == owner, "only owner");
        paused = true;
    }

    function _check(address, address, uint256) internal view override returns (uint256) {
        require(!paused, "paused");
        return 0;
    }
}

/// ``transfer`` from anyone but the pool returns false and moves nothing (old tokens did this
/// instead of reverting; a caller that ignores the return value thinks the transfer happened).
contract FalseReturnToken is HostileToken {
    address public pool;

    constructor(string memory symbol_) HostileToken(symbol_) {}

    function setPool(address pool_) external {
        require(msg.sender == owner, "only owner");
        pool = pool_;
    }

    function transfer(address to, uint256 amount) external override returns (bool) {
        if (msg.sender != pool && msg.sender != owner) {
            return false;
        }
        _transfer(msg.sender, to, amount);
        return true;
    }
}

/// No transfer above ``maxTx`` (the anti-whale limit that traps a position too big to exit).
contract MaxTxToken is HostileToken {
    uint256 public immutable maxTx;

    constructor(string memory symbol_, uint256 maxTx_) HostileToken(symbol_) {
        maxTx = maxTx_;
    }

    function _check(address, address, uint256 amount) internal view override returns (uint256) {
        require(amount <= maxTx, "max tx exceeded");
        return 0;
    }
}
