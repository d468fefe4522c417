// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// The token-safety probe. It is never deployed: a simulation puts this code at wallet A's own
/// address (a state override), so every token call below comes from wallet A, exactly as the
/// bot's real trades will, and a token that blocks or taxes wallet A shows it here.
///
/// In one call it buys a small amount of the token along the venue's path, buys the same
/// small amount for another address (the control: is it wallet A or everyone?), transfers
/// half of what arrived to that address, sells the rest back along the reversed path, then
/// buys and sells the order's full size (a max-transaction or max-wallet limit shows only at
/// size). Every step is measured by balance deltas and never reverts the probe: failures come
/// back as revert data, so the caller can name what was found.
interface IERC20Probe {
    function balanceOf(address) external view returns (uint256);
    function approve(address, uint256) external returns (bool);
    function transfer(address, uint256) external returns (bool);
}

interface IV2RouterProbe {
    function getAmountsOut(uint256 amountIn, address[] calldata path)
        external view returns (uint256[] memory);
    function swapExactTokensForTokensSupportingFeeOnTransferTokens(
        uint256 amountIn, uint256 amountOutMin, address[] calldata path, address to,
        uint256 deadline) external;
}

interface IV3RouterProbe {
    struct ExactInputParams {
        bytes path;
        address recipient;
        uint256 deadline;
        uint256 amountIn;
        uint256 amountOutMinimum;
    }

    function exactInput(ExactInputParams calldata params) external payable returns (uint256);
}

interface IQuoterV2Probe {
    function quoteExactInput(bytes memory path, uint256 amountIn)
        external returns (uint256, uint160[] memory, uint32[] memory, uint256);
}

contract TokenProbe {
    uint8 internal constant V2 = 2;
    uint8 internal constant V3 = 3;

    /// How to buy the token: ``path[0]`` is what wallet A pays with, the last entry the token
    /// under test; ``fees`` (V3 only) has one fee tier per hop. ``pool`` is the last hop's pool.
    struct Route {
        uint8 kind;
        address router;
        address quoter;
        address pool;
        address[] path;
        uint24[] fees;
    }

    struct Report {
        uint256 quoted; // the pool maths' output for the small buy (0: quote failed)
        bool buyOk;
        bytes buyError;
        uint256 received; // what reached wallet A
        uint256 poolSent; // what left the last pool
        bool controlOk;
        bytes controlError;
        bool transferOk;
        bool transferReturnedFalse;
        bytes transferError;
        uint256 transferSent;
        uint256 transferArrived;
        uint256 transferDebited;
        bool sellOk;
        bytes sellError;
        uint256 sellSent;
        uint256 sellArrived; // what reached the pool
        uint256 sellOut; // what wallet A got back in path[0]
        bool bigBuyOk;
        bytes bigBuyError;
        uint256 bigReceived;
        bool bigSellOk;
        bytes bigSellError;
        uint256 startSelf; // the token balances of wallet A and the other address, before
        uint256 endSelf;
        uint256 startOther;
        uint256 endOther;
        bytes zeroTransferError; // when the buy fails: why a transfer of 0 from wallet A fails
        bool inputBlocked; // when the buy fails: wallet A cannot send what it pays with either
        bytes inputTransferError;
    }

    function probe(Route calldata route, uint256 smallIn, uint256 bigIn, address other)
        external returns (Report memory r)
    {
        IERC20Probe token = IERC20Probe(route.path[route.path.length - 1]);
        IERC20Probe payWith = IERC20Probe(route.path[0]);
        require(payWith.balanceOf(address(this)) >= 2 * smallIn + bigIn, "probe: balance");
        payWith.approve(route.router, type(uint256).max);
        r.startSelf = token.balanceOf(address(this));
        r.startOther = token.balanceOf(other);
        (r.controlOk, r.controlError,) = _buy(route, smallIn, other);
        // Quoted after the control buy, on the state the measured buy meets.
        r.quoted = _quote(route, smallIn);
        uint256 poolBefore = token.balanceOf(route.pool);
        (r.buyOk, r.buyError, r.received) = _buy(route, smallIn, address(this));
        r.poolSent = poolBefore - _min(poolBefore, token.balanceOf(route.pool));
        if (!r.buyOk) {
            // Routers report a failed token transfer generically; the token's own words (e.g.
            // "paused") come from a plain transfer, which needs no balance at amount 0.
            try token.transfer(other, 0) {} catch (bytes memory reason) {
                r.zeroTransferError = reason;
            }
            // A buy also fails when the token paid with is the one refusing wallet A: then
            // this probe says nothing about the token under test.
            try payWith.transfer(other, 0) {} catch (bytes memory reason) {
                r.inputBlocked = true;
                r.inputTransferError = reason;
            }
            return _finish(r, token, other);
        }

        _transfer(r, token, other);

        uint256 held = token.balanceOf(address(this));
        r.sellSent = held > r.startSelf ? held - r.startSelf : 0;
        if (r.sellSent > 0) {
            uint256 before = token.balanceOf(route.pool);
            (r.sellOk, r.sellError, r.sellOut) = _sell(route, r.sellSent);
            uint256 afterSell = token.balanceOf(route.pool);
            r.sellArrived = afterSell > before ? afterSell - before : 0;
        }

        if (bigIn > 0) {
            (r.bigBuyOk, r.bigBuyError, r.bigReceived) = _buy(route, bigIn, address(this));
            if (r.bigBuyOk && r.bigReceived > 0) {
                (r.bigSellOk, r.bigSellError,) = _sell(route, r.bigReceived);
            }
        }
        return _finish(r, token, other);
    }

    function _finish(Report memory r, IERC20Probe token, address other)
        internal view returns (Report memory)
    {
        r.endSelf = token.balanceOf(address(this));
        r.endOther = token.balanceOf(other);
        return r;
    }

    function _transfer(Report memory r, IERC20Probe token, address other) internal {
        r.transferSent = r.received / 2;
        if (r.transferSent == 0) {
            return;
        }
        uint256 selfBefore = token.balanceOf(address(this));
        uint256 otherBefore = token.balanceOf(other);
        try token.transfer(other, r.transferSent) returns (bool ok) {
            r.transferOk = ok;
            r.transferReturnedFalse = !ok;
        } catch (bytes memory reason) {
            r.transferError = reason;
        }
        uint256 selfAfter = token.balanceOf(address(this));
        uint256 otherAfter = token.balanceOf(other);
        r.transferDebited = selfBefore > selfAfter ? selfBefore - selfAfter : 0;
        r.transferArrived = otherAfter > otherBefore ? otherAfter - otherBefore : 0;
    }

    function _buy(Route calldata route, uint256 amountIn, address to)
        internal returns (bool ok, bytes memory err, uint256 received)
    {
        IERC20Probe token = IERC20Probe(route.path[route.path.length - 1]);
        uint256 before = token.balanceOf(to);
        try this.swapAlong(route, false, amountIn, to) {
            ok = true;
        } catch (bytes memory reason) {
            err = reason;
        }
        uint256 afterBuy = token.balanceOf(to);
        received = afterBuy > before ? afterBuy - before : 0;
    }

    function _sell(Route calldata route, uint256 amountIn)
        internal returns (bool ok, bytes memory err, uint256 out)
    {
        IERC20Probe payWith = IERC20Probe(route.path[0]);
        uint256 before = payWith.balanceOf(address(this));
        try this.swapAlong(route, true, amountIn, address(this)) {
            ok = true;
        } catch (bytes memory reason) {
            err = reason;
        }
        uint256 afterSell = payWith.balanceOf(address(this));
        out = afterSell > before ? afterSell - before : 0;
    }

    /// One swap along the route (``reverse``: from the token back to ``path[0]``). External so
    /// that a revert inside can be caught; only the probe itself may call it.
    function swapAlong(Route calldata route, bool reverse, uint256 amountIn, address to)
        external
    {
        require(msg.sender == address(this), "probe: internal");
        address[] memory path = _path(route.path, reverse);
        if (reverse) {
            IERC20Probe(path[0]).approve(route.router, type(uint256).max);
        }
        if (route.kind == V2) {
            IV2RouterProbe(route.router).swapExactTokensForTokensSupportingFeeOnTransferTokens(
                amountIn, 1, path, to, block.timestamp + 1);
        } else {
            IV3RouterProbe(route.router).exactInput(IV3RouterProbe.ExactInputParams({
                path: _v3Path(path, route.fees, reverse), recipient: to,
                deadline: block.timestamp + 1, amountIn: amountIn, amountOutMinimum: 1
            }));
        }
    }

    function _quote(Route calldata route, uint256 amountIn) internal returns (uint256) {
        if (route.kind == V2) {
            try IV2RouterProbe(route.router).getAmountsOut(amountIn, route.path)
                returns (uint256[] memory amounts) {
                return amounts[amounts.length - 1];
            } catch {
                return 0;
            }
        }
        bytes memory path = _v3Path(route.path, route.fees, false);
        try IQuoterV2Probe(route.quoter).quoteExactInput(path, amountIn)
            returns (uint256 out, uint160[] memory, uint32[] memory, uint256) {
            return out;
        } catch {
            return 0;
        }
    }

    function _path(address[] calldata path, bool reverse)
        internal pure returns (address[] memory out)
    {
        out = new address[](path.length);
        for (uint256 i = 0; i < path.length; i++) {
            out[i] = reverse ? path[path.length - 1 - i] : path[i];
        }
    }

    /// Uniswap V3's packed path: token, fee, token, fee, ..., token (``path`` already in the
    /// direction of the swap; ``fees`` in the buy direction).
    function _v3Path(address[] memory path, uint24[] calldata fees, bool reverse)
        internal pure returns (bytes memory packed)
    {
        packed = abi.encodePacked(path[0]);
        for (uint256 i = 0; i < fees.length; i++) {
            uint24 fee = reverse ? fees[fees.length - 1 - i] : fees[i];
            packed = abi.encodePacked(packed, fee, path[i + 1]);
        }
    }

    function _min(uint256 a, uint256 b) internal pure returns (uint256) {
        return a < b ? a : b;
    }
}
